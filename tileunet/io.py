"""Reading user images lazily and writing Zarr outputs atomically.

Sources are TIFF / OME-TIFF (multi-page, 2D or stacks, opened with
``tifffile.imread(path, aszarr=True)`` so nothing is loaded until sliced) and
Zarr v2/v3 arrays, including the first resolution of an OME-Zarr image group.
Every problem is raised as :class:`tileunet.errors.InputError` naming the
file, the problem and the fix.  :func:`pixel_size` reads the physical pixel size
the file declares (OME-TIFF, ImageJ TIFF, TIFF resolution tags, OME-Zarr scale),
so that predictions overlay the input in its own units.
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

from .errors import InputError

log = logging.getLogger(__name__)

TIFF_SUFFIXES = (".tif", ".tiff")
# Unit spellings of OME-XML (UnitsLength / UnitsTime), ImageJ and TIFF -> the UDUNITS-2 names NGFF
# requires in an axis' "unit" (https://ngff.openmicroscopy.org/0.5/#axes-md).  NGFF names map to themselves.
UNITS = {
    "ym": "yoctometer", "zm": "zeptometer", "am": "attometer", "fm": "femtometer", "pm": "picometer",
    "Å": "angstrom", "nm": "nanometer", "µm": "micrometer", "μm": "micrometer", "um": "micrometer",
    "micron": "micrometer", "microns": "micrometer", "mm": "millimeter", "cm": "centimeter",
    "dm": "decimeter", "m": "meter", "km": "kilometer", "in": "inch", "inch": "inch", "ft": "foot",
    "ys": "yoctosecond", "zs": "zeptosecond", "as": "attosecond", "fs": "femtosecond", "ps": "picosecond",
    "ns": "nanosecond", "µs": "microsecond", "μs": "microsecond", "us": "microsecond", "ms": "millisecond",
    "s": "second", "sec": "second", "min": "minute", "h": "hour", "d": "day",
}
NGFF_UNITS = {
    "space": {"angstrom", "attometer", "centimeter", "decimeter", "exameter", "femtometer", "foot", "gigameter",
              "hectometer", "inch", "kilometer", "megameter", "meter", "micrometer", "mile", "millimeter",
              "nanometer", "parsec", "petameter", "picometer", "terameter", "yard", "yoctometer", "yottameter",
              "zeptometer", "zettameter"},
    "time": {"attosecond", "centisecond", "day", "decisecond", "exasecond", "femtosecond", "gigasecond",
             "hectosecond", "hour", "kilosecond", "megasecond", "microsecond", "millisecond", "minute",
             "nanosecond", "petasecond", "picosecond", "second", "terasecond", "yoctosecond", "yottasecond",
             "zeptosecond", "zettasecond"},
}
# TIFF ResolutionUnit (tifffile.RESUNIT) -> micrometres per unit; NONE (1) says nothing physical
_MICROMETERS_PER_RESUNIT = {2: 25400.0, 3: 10000.0, 4: 1000.0, 5: 1.0}


def _open_tiff(path):
    try:
        store = tifffile.imread(path, aszarr=True)
        arr = zarr.open(store, mode="r")
    except Exception as exc:  # tifffile raises many types for corrupt files
        raise InputError(path, f"cannot be read as TIFF ({exc})", "re-export the image as TIFF or OME-TIFF") from exc
    if isinstance(arr, zarr.Group):  # pyramidal TIFF: level 0 is full resolution
        arr = arr["0"]
    return arr


def _open_zarr(path):
    try:
        node = zarr.open(path, mode="r")
    except Exception as exc:
        raise InputError(path, f"cannot be opened as Zarr ({exc})", "point to a Zarr array or OME-Zarr image") from exc
    if isinstance(node, zarr.Group):
        if "0" in node:  # OME-Zarr multiscale image: full resolution
            return node["0"]
        raise InputError(path, "is a Zarr group without an array '0'",
                         "name the array inside the group, e.g. store.zarr/image")
    return node


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
    path = Path(path)
    if not path.exists():
        raise InputError(path, "does not exist", "check the path in the sample table (relative paths start at the working directory)")
    if path.suffix.lower() in TIFF_SUFFIXES:
        arr = _open_tiff(path)
    elif path.is_dir():
        arr = _open_zarr(path)
    else:
        raise InputError(path, f"has unsupported type '{path.suffix}'", "use TIFF/OME-TIFF or a Zarr array")
    check_channels(arr.shape, declared_axes(path, arr.ndim), path)
    arr = squeeze_singletons(arr, path)
    return arr


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
            axes = ""
            for group, dataset in ((path, "0"), (path.parent, path.name)):
                try:
                    attrs = zarr.open_group(group, mode="r").attrs.asdict()
                except Exception:  # not a group
                    continue
                ms = (attrs.get("ome", attrs).get("multiscales") or [{}])[0]
                if any(d.get("path") == dataset for d in ms.get("datasets", [])):
                    axes = "".join("c" if isinstance(a, dict) and a.get("type") == "channel" else
                                   (a["name"] if isinstance(a, dict) else a)[0] for a in ms.get("axes", [])).lower()
                    break
    except Exception:  # metadata only helps: unreadable files are reported when opened or read
        return None
    return axes if len(axes) == ndim else None


def check_channels(shape, axes, path):
    """Refuse RGB and multichannel data: a declared channel or sample axis, or a trailing axis of <= 4.

    Parameters
    ----------
    shape : tuple of int
        The array's shape as stored.
    axes : str or None
        :func:`declared_axes`; None falls back on the shape: a 3D array whose last axis is
        4 or shorter is (Y, X, C), not a stack of 4-pixel-wide planes.
    path : str or Path
        For the message.
    """
    shape = tuple(shape)
    channels = [n for a, n in zip(axes or "", shape) if a in "cs" and n > 1]
    if not channels and not axes and len(shape) == 3 and shape[-1] <= 4 < shape[-2]:
        channels = [shape[-1]]
    if not channels:
        return
    n = channels[0]
    kind = "RGB" if n == 3 else "RGBA" if n == 4 and "s" in (axes or "s") else "multichannel"
    declared = f", axes {axes.upper()}" if axes else ""
    planar = (f"; if its {n} planes are a Z or T stack rather than colours, save it with "
              f"`tifffile.imwrite(path, stack, photometric='minisblack')`" if (axes or "")[:1] == "s" else "")
    raise InputError(path, f"is {'an' if kind[0] in 'RA' else 'a'} {kind} image with {n} channels (shape {shape}"
                     f"{declared}); RGB and multichannel images are not supported yet: tileunet segments one grey "
                     f"channel", "convert it to one grey channel (e.g. `skimage.color.rgb2gray` of its (Y, X, 3) pixels, "
                     "saved with `tifffile.imwrite`) or export the channel to segment as a 2D image or stack (label "
                     f"images hold one instance id per pixel, not colours){planar}")


def squeeze_singletons(arr, path):
    """Drop leading length-1 axes (OME-TIFF's T/C/Z); refuse anything not 2D or 3D."""
    shape = arr.shape
    lead = 0
    while len(shape) - lead > 2 and shape[lead] == 1:
        lead += 1
    if lead:
        arr = arr[(0,) * lead] if len(shape) - lead > 0 else arr
    if arr.ndim not in (2, 3):
        raise InputError(path, f"has shape {shape}; tileunet takes 2D (Y, X) images or stacks (N, Y, X)",
                         "export a single channel as a 2D image or a 3D stack (multichannel images are not supported yet)")
    return arr


def read_array(path):
    """Read a whole image or label file into memory (for training-size data).

    Corrupt pixel data (truncated strips, broken compression) surfaces here,
    since :func:`open_array` only parses the header.
    """
    arr = open_array(path)
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


# --- physical pixel size -------------------------------------------------------------------------


def ngff_unit(unit, kind="space"):
    """The NGFF (UDUNITS-2) name of a unit spelling, or None if unknown or of another kind.

    Examples
    --------
    >>> ngff_unit("µm"), ngff_unit("micron"), ngff_unit("s", "time"), ngff_unit("pixel")
    ('micrometer', 'micrometer', 'second', None)
    """
    if unit is None:
        return None
    name = str(unit).strip().replace("\\u00B5", "µ")
    name = UNITS.get(name, name.lower())
    return name if name in NGFF_UNITS[kind] else None


def _entry(path, axis, size, unit):
    """(size, unit) for one axis, or None if the file gives no usable size; warns on unknown units."""
    try:
        size = float(size)
    except (TypeError, ValueError):
        return None
    if not np.isfinite(size) or size <= 0:
        return None
    size = float(f"{size:.12g}")  # 1 / (pixels per unit) as stored: 0.65 rather than 0.6499999999999999
    kind = "time" if axis == "t" else "space"
    name = ngff_unit(unit, kind)
    if unit is not None and name is None:
        log.warning("%s: unit %r of axis %s is not an NGFF %s unit; writing the size %g without a unit",
                    path, unit, axis, kind, size)
    return size, name


def _ome_tiff_sizes(tif):
    pixels = tifffile.xml2dict(tif.ome_metadata)["OME"]["Image"]
    pixels = (pixels[0] if isinstance(pixels, list) else pixels)["Pixels"]
    out = {a: (pixels.get(f"PhysicalSize{a.upper()}"), pixels.get(f"PhysicalSize{a.upper()}Unit", "µm"))
           for a in "xyz"}
    out["t"] = (pixels.get("TimeIncrement"), pixels.get("TimeIncrementUnit", "s"))  # OME-XML defaults
    return out


def _tiff_sizes(tif):
    page = tif.pages.first if hasattr(tif.pages, "first") else tif.pages[0]
    (xres, yres), resunit = page.resolution, int(page.resolutionunit)
    ij = tif.imagej_metadata or {}
    out = {}
    if ij.get("unit") and resunit == 1:  # ImageJ: resolution in pixels per `unit`
        unit = ij["unit"]
        out = {"x": (1 / xres if xres else None, unit), "y": (1 / yres if yres else None, unit),
               "z": (ij.get("spacing"), unit)}
        if ij.get("finterval"):
            out["t"] = (ij["finterval"], ij.get("tunit", "s"))
    elif resunit in _MICROMETERS_PER_RESUNIT:  # baseline TIFF: pixels per inch / centimetre
        um = _MICROMETERS_PER_RESUNIT[resunit]
        out = {"x": (um / xres if xres else None, "micrometer"), "y": (um / yres if yres else None, "micrometer")}
    return out


def _ome_zarr_sizes(path):
    """Scale and units of an OME-Zarr image group (NGFF 0.4 or 0.5), or of one of its resolution arrays."""
    path = Path(path)
    for group, dataset in ((path, None), (path.parent, path.name)):
        try:
            attrs = zarr.open_group(group, mode="r").attrs.asdict()
        except Exception:  # not a group: nothing declared here
            continue
        ms = attrs.get("ome", attrs).get("multiscales")
        if not ms:
            continue
        ms = ms[0]
        datasets = ms.get("datasets", [])
        ds = datasets[0] if dataset is None else next((d for d in datasets if d.get("path") == dataset), None)
        if ds is None:
            continue
        scale = np.ones(len(ms["axes"]))
        for transforms in (ds.get("coordinateTransformations", []), ms.get("coordinateTransformations", [])):
            for t in transforms:  # the dataset's scale, then the multiscale's global one
                if t.get("type") == "scale":
                    scale = scale * np.asarray(t["scale"], dtype=float)
        axes = [a if isinstance(a, dict) else {"name": a} for a in ms["axes"]]
        return {a["name"].lower(): (s, a.get("unit")) for a, s in zip(axes, scale) if a["name"].lower() in "tzyx"}
    return {}


def pixel_size(path):
    """Physical size of one pixel (or plane, or frame) per axis, as the image file declares it.

    Parameters
    ----------
    path : str or Path
        An image :func:`open_array` reads.

    Returns
    -------
    dict
        Axis name (``"x"``, ``"y"``, ``"z"``, ``"t"``) -> ``(size, unit)``, ``unit`` an NGFF
        (UDUNITS-2) name such as ``"micrometer"`` or ``"second"``, or None where the file gives a
        size in a unit NGFF does not know.  Axes the file says nothing about are absent, so
        ``{}`` means "pixels": no physical size at all.

    Notes
    -----
    Sources, in order: OME-TIFF ``PhysicalSizeX/Y/Z`` (+ ``...Unit``, default µm) and
    ``TimeIncrement``; ImageJ TIFF resolution with its ``unit``, ``spacing`` and ``finterval``;
    baseline TIFF ``XResolution``/``YResolution`` in pixels per inch or centimetre (converted to
    micrometres; ``ResolutionUnit`` NONE declares nothing); an OME-Zarr image's scale of its
    first resolution (or of the array named) times the multiscale's global scale, with the
    axes' units.  Nothing here is ever fatal: an unreadable file is reported by
    :func:`open_array`.

    Examples
    --------
    >>> import tempfile, numpy as np, tifffile
    >>> f = tempfile.NamedTemporaryFile(suffix=".ome.tif", delete=False).name
    >>> tifffile.imwrite(f, np.zeros((4, 4), np.uint8), ome=True, metadata={"PhysicalSizeX": 0.65,
    ...                  "PhysicalSizeY": 0.65})
    >>> pixel_size(f)
    {'x': (0.65, 'micrometer'), 'y': (0.65, 'micrometer')}
    """
    path = Path(path)
    try:
        if path.suffix.lower() in TIFF_SUFFIXES:
            with tifffile.TiffFile(path) as tif:
                raw = _ome_tiff_sizes(tif) if tif.is_ome else _tiff_sizes(tif)
        elif path.is_dir():
            raw = _ome_zarr_sizes(path)
        else:
            raw = {}
    except Exception as exc:  # metadata is a bonus: the pixels are what open_array checks
        log.warning("%s: could not read its pixel size (%s); the prediction is written in pixels", path, exc)
        return {}
    out = {}
    for axis in "xyzt":
        if axis in raw:
            entry = _entry(path, axis, *raw[axis])
            if entry is not None:
                out[axis] = entry
    return out
