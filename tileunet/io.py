"""Reading user images lazily and writing Zarr outputs atomically.

Sources are TIFF / OME-TIFF (multi-page, 2D or stacks, opened with
``tifffile.imread(path, aszarr=True)`` so nothing is loaded until sliced) and
Zarr v2/v3 arrays, including the full resolution of an OME-Zarr image (the first
dataset of its multiscales metadata; the first image of a bioformats2raw store).
Every problem is raised as :class:`tileunet.errors.InputError` naming the
file, the problem and the fix.  The physical pixel size a file declares is read
by :mod:`tileunet.pixel_size`.
"""

import contextlib
import logging
import os
import shutil
import uuid
from pathlib import Path

import numpy as np
import tifffile
import zarr

from .channels import AxisView, channel_axis, channel_names, select_channels
from .errors import InputError

log = logging.getLogger(__name__)

TIFF_SUFFIXES = (".tif", ".tiff")


def _open_tiff(path, level=0):
    try:
        with tifffile.TiffFile(path) as tif:
            shapes = [tuple(lv.shape) for lv in tif.series[0].levels]
        if level < len(shapes):
            # one level's tiles, decoded as they are sliced: a whole-slide image is never read whole
            arr = zarr.open(tifffile.imread(path, aszarr=True, level=level), mode="r")
    except Exception as exc:  # tifffile raises many types for corrupt files
        raise InputError(path, f"cannot be read as TIFF ({exc})", "re-export the image as TIFF or OME-TIFF") from exc
    if level >= len(shapes):
        raise _missing_level(path, level, shapes)
    return arr


def _missing_level(path, level, shapes):
    return InputError(path, f"has no resolution level {level}: its {len(shapes)} level(s) are "
                      + ", ".join(f"{i} {s}" for i, s in enumerate(shapes)),
                      f"set predict.level to 0..{len(shapes) - 1}" if len(shapes) > 1 else
                      "set predict.level: 0, or predict a pyramidal export of the slide")


def _multiscales(attrs):
    """The first NGFF ``multiscales`` entry of a group's attributes (0.4 or 0.5 layout), or None."""
    ms = attrs.get("ome", attrs).get("multiscales")
    return ms[0] if isinstance(ms, list) and ms else None


def _open_zarr(path, level=0):
    try:
        node = zarr.open(path, mode="r")
    except Exception as exc:
        raise InputError(path, f"cannot be opened as Zarr ({exc})", "point to a Zarr array or OME-Zarr image") from exc
    return _resolution(node, path, level)


def _resolution(node, path, level=0, depth=0):
    """Resolution ``level`` of an OME-Zarr image: that dataset of its multiscales (0: full resolution).

    A bioformats2raw store (a group of images ``0``, ``1``...) gives its first image.
    """
    if isinstance(node, zarr.Array):
        if level:
            raise InputError(path, f"is a single array, but predict.level is {level}",
                             "point to the OME-Zarr image group that holds the resolution levels, or set "
                             "predict.level: 0")
        return node
    ms = _multiscales(node.attrs.asdict())
    fix = ("point to the full-resolution array itself (e.g. store.zarr/0), or re-export the image with "
           "ome-zarr-py or bioformats2raw")
    if ms is not None:
        datasets = ms.get("datasets") or []
        if not datasets or "path" not in datasets[0]:
            raise InputError(path, "is an OME-Zarr image whose multiscales metadata lists no level 0 dataset", fix)
        if level >= len(datasets):
            raise _missing_level(path, level, [node[d["path"]].shape if d.get("path") in node else "missing"
                                               for d in datasets])
        name = datasets[level].get("path")
        if name not in node or not isinstance(node[name], zarr.Array):
            raise InputError(path, f"is an OME-Zarr image whose level {level} dataset {name!r} (multiscales "
                             "metadata) is not an array of the group", fix)
        return node[name]
    if "0" in node and depth < 1:  # an array '0' without metadata, or bioformats2raw's first image
        return _resolution(node["0"], path, level, depth + 1)
    raise InputError(path, "is a Zarr group without an array '0'", "name the array inside the group, e.g. store.zarr/image")


def ngff_image(path, level=0):
    """(multiscales entry, NGFF attributes, dataset entry) of the OME-Zarr image ``path`` is or lies in.

    (None, None, None) where ``path`` is no OME-Zarr image.

    ``path`` may be the image group or a bioformats2raw store (its first image), whose
    dataset ``level`` is given (None if it has no such level), or one of the image's
    resolution arrays, whose own dataset entry is given.
    """
    path = Path(path)
    for group, dataset in ((path, None), (path / "0", None), (path.parent, path.name)):
        try:
            attrs = zarr.open_group(group, mode="r").attrs.asdict()
        except Exception:  # not a group
            continue
        ms = _multiscales(attrs)
        datasets = (ms or {}).get("datasets") or []
        if dataset is None:
            entry = datasets[level] if level < len(datasets) else None
        else:
            entry = next((d for d in datasets if d.get("path") == dataset), None)
        if ms is not None and (dataset is None or entry is not None):
            return ms, attrs.get("ome", attrs), entry
    return None, None, None


def open_array(path):
    """Open an image or label file lazily.

    Parameters
    ----------
    path : str or Path
        ``*.tif``/``*.tiff`` (incl. OME-TIFF), or a Zarr array / OME-Zarr image
        (``store.zarr`` or ``store.zarr/path/to/array``).

    Returns
    -------
    array-like
        A read-only zarr array of shape (Y, X) or (N, Y, X); nothing is read
        until it is sliced.
    """
    arr = _open_any(path)
    check_channels(arr.shape, declared_axes(path, arr.ndim), path)
    arr = squeeze_singletons(arr, path)
    return arr


def _open_any(path, level=0):
    path = Path(path)
    if not path.exists():
        raise InputError(path, "does not exist", "check the path in the sample table (relative paths start at the working directory)")
    if path.suffix.lower() in TIFF_SUFFIXES:
        return _open_tiff(path, level)
    if path.is_dir():
        return _open_zarr(path, level)
    raise InputError(path, f"has unsupported type '{path.suffix}'", "use TIFF/OME-TIFF or a Zarr array")


def open_image(path, channels=None, level=0):
    """Open an image lazily with its channels selected and placed in front of (Y, X).

    Parameters
    ----------
    path : str or Path
        As :func:`open_array`; RGB(A), OME-TIFF / ImageJ channel stacks and NGFF
        channel axes are recognised from the file's metadata
        (:mod:`tileunet.channels`).
    channels : list of int or str, optional
        Channels to keep, in order (indices or names); all if None.
    level : int
        Resolution level of a pyramidal TIFF (SVS, NDPI, OME-TIFF SubIFDs) or OME-Zarr
        image; 0 is full resolution.

    Returns
    -------
    image : tileunet.channels.AxisView
        Shape (Y, X) or (N, Y, X) for one channel, (C, Y, X) or (N, C, Y, X) for C > 1;
        nothing is read until it is sliced.
    names : list of str
        Names of the kept channels.
    """
    arr = _open_any(path, level)
    axes = declared_axes(path, arr.ndim)
    chan = channel_axis(arr.shape, axes, path)
    ngff = None if Path(path).suffix.lower() in TIFF_SUFFIXES else ngff_image(path)[1]
    names = channel_names(path, arr.shape[chan], axes, ngff) if chan is not None else ["0"]
    keep = select_channels(channels, names, path)
    free = [a for a in range(arr.ndim) if a != chan]
    fixed = {}
    for a in free[:-2]:
        if arr.shape[a] != 1:
            break
        fixed[a] = 0
    view = AxisView(arr, fixed, chan, keep)
    if len(free) - len(fixed) not in (2, 3):
        raise InputError(path, f"has shape {arr.shape}{f' (axes {axes.upper()})' if axes else ''}; tileunet takes "
                         "2D (Y, X) images or stacks (N, Y, X), with or without a channel axis",
                         "export a 2D image or one Z or T stack (with its channels)")
    return view, [names[k] for k in keep]


def declared_axes(path, ndim):
    """The axis letters (lower case) a file declares for its ``ndim``-dimensional array, or None.

    TIFF: tifffile's axes of the first series (``yxs`` for RGB, ``cyx`` for an ImageJ or
    OME-TIFF channel stack, ``q`` for unknown); OME-Zarr: the multiscales ``axes`` names, a
    ``channel``-type axis written ``c``.  None where the file declares nothing that matches.
    """
    path = Path(path)
    try:
        if path.suffix.lower() in TIFF_SUFFIXES:
            with tifffile.TiffFile(path) as tif:
                axes = tif.series[0].axes.lower()
        else:
            ms = ngff_image(path)[0] or {}
            axes = "".join("c" if isinstance(a, dict) and a.get("type") == "channel" else
                           (a["name"] if isinstance(a, dict) else a)[0] for a in ms.get("axes", [])).lower()
    except Exception:  # metadata only helps: unreadable files are reported when opened or read
        return None
    return axes if len(axes) == ndim else None


def check_channels(shape, axes, path):
    """Refuse RGB and multichannel data where one channel is needed (labels, tileunet's own arrays).

    Parameters
    ----------
    shape : tuple of int
        The array's shape as stored.
    axes : str or None
        :func:`declared_axes`; None falls back on the shape (:func:`tileunet.channels.channel_axis`).
    path : str or Path
        For the message.
    """
    axis = channel_axis(shape, axes, path)
    if axis is None:
        return
    n = tuple(shape)[axis]
    kind = "RGB" if n == 3 else "RGBA" if n == 4 and "s" in (axes or "s") else "multichannel"
    declared = f", axes {axes.upper()}" if axes else ""
    planar = (f"; if its {n} planes are a Z or T stack rather than colours, save it with "
              f"`tifffile.imwrite(path, stack, photometric='minisblack')`" if (axes or "")[:1] == "s" else "")
    raise InputError(path, f"is {'an' if kind[0] in 'RA' else 'a'} {kind} image with {n} channels (shape "
                     f"{tuple(shape)}{declared}), where one channel is needed: label images hold one instance id "
                     f"per pixel, not colours", "export the labels as a grey integer image (one id per cell, "
                     f"e.g. `tifffile.imwrite(path, labels.astype('uint16'))`){planar}")


def squeeze_singletons(arr, path):
    """Drop leading length-1 axes (OME-TIFF's T/C/Z); refuse anything not 2D or 3D."""
    shape = arr.shape
    lead = 0
    while len(shape) - lead > 2 and shape[lead] == 1:
        lead += 1
    if lead:
        arr = arr[(0,) * lead] if len(shape) - lead > 0 else arr
    if arr.ndim not in (2, 3):
        raise InputError(path, f"has shape {shape}; tileunet takes 2D (Y, X) labels or stacks (N, Y, X)",
                         "export the labels as a 2D image or a 3D stack of the image's planes")
    return arr


def read_array(path):
    """Read a whole label (or single-channel) file into memory (for training-size data).

    Corrupt pixel data (truncated strips, broken compression) surfaces here,
    since :func:`open_array` only parses the header.
    """
    return _read(path, open_array(path))


def read_image(path, channels=None, level=0):
    """:func:`open_image` read into memory: (numpy.ndarray, channel names)."""
    view, names = open_image(path, channels, level)
    return _read(path, view), names


def _read(path, arr):
    try:
        return np.asarray(arr[...])
    except Exception as exc:
        raise InputError(path, f"has unreadable pixel data ({exc})", "re-export the file; it is truncated or corrupt") from exc


def store_of(path):
    """The Zarr store a path names: the folder of a root ``zarr.json``, else the path itself.

    The workflow declares a store's root ``zarr.json`` as a rule's output rather than the
    folder, so that Snakemake writes no marker file into the Zarr hierarchy.

    Examples
    --------
    >>> str(store_of("results/predictions/a.ome.zarr/zarr.json")), str(store_of("results/augmented.zarr"))
    ('results/predictions/a.ome.zarr', 'results/augmented.zarr')
    """
    path = Path(path)
    return path.parent if path.name == "zarr.json" else path


def _remove(path):
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


@contextlib.contextmanager
def atomic_path(final):
    """Yield a temporary sibling path; rename it to ``final`` only on success.

    The temporary name starts with ``.`` beside ``final``, so a crash leaves
    ``final`` untouched (or absent) and never half-written.  An existing
    ``final`` is replaced only after the new one is complete.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        yield tmp
        if final.exists():
            old = final.with_name(f".{final.name}.old-{uuid.uuid4().hex[:8]}")
            os.replace(final, old)
            os.replace(tmp, final)
            _remove(old)
        else:
            os.replace(tmp, final)
    finally:
        _remove(tmp)


def write_array(store, name, data, chunks=None, attrs=None, compressors="auto"):
    """Write ``data`` as array ``name`` inside the Zarr v3 group ``store``, atomically.

    Parameters
    ----------
    store : str or Path
        Group directory (created if missing).
    name : str
        Array name inside the group (e.g. ``"image"``).
    data : numpy.ndarray
    chunks : tuple of int, optional
        Defaults to whole planes of at most 1024x1024.
    attrs : dict, optional
        JSON-serialisable attributes.
    """
    store = Path(store)
    zarr.open_group(store, mode="a", zarr_format=3)
    if chunks is None:
        chunks = (1,) * (data.ndim - 2) + tuple(min(s, 1024) for s in data.shape[-2:])
    with atomic_path(store / name) as tmp:
        arr = zarr.create_array(tmp, shape=data.shape, dtype=data.dtype, chunks=chunks,
                                compressors=compressors, zarr_format=3)
        arr[...] = data
        if attrs:
            arr.attrs.update(attrs)
    return zarr.open_array(store / name, mode="r")
