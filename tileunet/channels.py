"""Channels of user images: recognised from metadata, selected, and placed in front of (Y, X).

Inside tileunet a single-channel image is (Y, X) or a stack (N, Y, X), as the
stage contract says; an image of C > 1 channels is (C, Y, X) or (N, C, Y, X),
and its ``results/data`` array records the channel names in the attribute
``channels``.  Where a file declares its axes (TIFF photometric / samples per
pixel and OME or ImageJ axes through tifffile, NGFF ``axes``), the channel axis
is taken from there; only a file that declares nothing is read by its shape
(a 3D array whose last axis is 4 or shorter is interleaved (Y, X, C)).
Reading stays lazy: :class:`AxisView` reorders and selects on every slice.
"""

import logging
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import tifffile

from .errors import InputError

log = logging.getLogger(__name__)

CHANNELS_ATTR = "channels"


def channel_axis(shape, axes, path):
    """Index of the channel axis of an array as stored, or None for a single-channel image.

    Parameters
    ----------
    shape : tuple of int
    axes : str or None
        Declared axis letters (:func:`tileunet.io.declared_axes`): ``c`` channels,
        ``s`` samples (RGB), others spatial or time; None falls back on the shape.
    path : str or Path
        For the message.
    """
    found = [i for i, (a, n) in enumerate(zip(axes or "", shape)) if a in "cs" and n > 1]
    if len(found) > 1:
        raise InputError(path, f"has two channel axes (axes {axes.upper()}, shape {tuple(shape)})",
                         "export it with one channel axis (e.g. the RGB planes as channels)")
    if found:
        return found[0]
    if not axes and len(shape) == 3 and shape[-1] <= 4 < shape[-2]:
        log.info("%s declares no axes: its last axis (%d) is read as interleaved channels", path, shape[-1])
        return 2
    return None


def _ome_channel_names(path):
    with tifffile.TiffFile(path) as tif:
        xml = tif.ome_metadata
    if not xml:
        return []
    root = ET.fromstring(xml)
    image = next((e for e in root.iter() if e.tag.endswith("}Image") or e.tag == "Image"), None)
    if image is None:
        return []
    return [c.get("Name") or "" for c in image.iter() if c.tag.endswith("}Channel") or c.tag == "Channel"]


def channel_names(path, n, axes, ngff=None):
    """Names of the ``n`` channels of a file: OME / NGFF labels, R G B (A) for colour samples, else indices.

    Parameters
    ----------
    path : str or Path
        A TIFF's OME-XML ``Channel Name`` attributes are read from it.
    n : int
    axes : str or None
        Declared axis letters (``s``: colour samples).
    ngff : dict, optional
        An OME-Zarr image's attributes (``omero`` channel labels).
    """
    try:
        if ngff is not None:
            names = [c.get("label") or "" for c in (ngff.get("omero") or {}).get("channels", [])]
        else:
            names = _ome_channel_names(path) if Path(path).suffix.lower() in (".tif", ".tiff") else []
    except Exception:  # names only help; unreadable metadata leaves indices
        names = []
    if len(names) == n and all(names) and len(set(names)) == n:
        return [str(name) for name in names]
    if n in (3, 4) and ("s" in (axes or "") or not axes):
        return list("RGBA"[:n])
    return [str(i) for i in range(n)]


def select_channels(spec, names, path):
    """Indices of the channels ``spec`` asks for (None: all), in its order.

    Parameters
    ----------
    spec : list of int or str, or None
        Channel indices (0-based) or names (:func:`channel_names`).
    names : list of str
        The file's channel names.
    path : str or Path
        For the message.
    """
    if spec is None:
        return list(range(len(names)))
    out = []
    for item in spec:
        if isinstance(item, str) and item in names:
            out.append(names.index(item))
        elif isinstance(item, int) and not isinstance(item, bool) and 0 <= item < len(names):
            out.append(item)
        else:
            raise InputError(path, f"has no channel {item!r}: its {len(names)} channel(s) are "
                             f"{', '.join(f'{i} {n!r}' for i, n in enumerate(names))}",
                             "set ingest.channels to indices 0.." f"{len(names) - 1} or to these names")
    if len(set(out)) != len(out):
        raise InputError(path, f"ingest.channels {list(spec)} names a channel twice", "list each channel once")
    return out


class AxisView:
    """A lazy view of an array with singleton axes dropped and the channel axis selected and moved to -3.

    Parameters
    ----------
    source : array-like
        zarr, numpy or anything sliceable with a tuple of ints and slices.
    fixed : dict of int -> int
        Source axes read at one index (dropped from the view).
    chan : int or None
        Source axis of the channels.
    keep : sequence of int
        Channels of ``chan`` the view holds, in order; one channel drops the axis.
    """

    def __init__(self, source, fixed=None, chan=None, keep=(0,)):
        self.source, self.fixed, self.chan = source, dict(fixed or {}), chan
        self.keep = tuple(int(k) for k in keep) if chan is not None else (0,)
        self.has_channels = chan is not None and len(self.keep) > 1
        self._free = [a for a in range(len(source.shape)) if a not in self.fixed and a != chan]
        spatial = [source.shape[a] for a in self._free]
        self.shape = tuple(spatial[:-2]) + ((len(self.keep),) if self.has_channels else ()) + tuple(spatial[-2:])
        self.dtype = np.dtype(source.dtype)
        self.ndim = len(self.shape)

    def _key(self, key):
        key = key if isinstance(key, tuple) else (key,)
        if any(k is Ellipsis for k in key):
            i = key.index(Ellipsis)
            key = key[:i] + (slice(None),) * (self.ndim - len(key) + 1) + key[i + 1:]
        key = key + (slice(None),) * (self.ndim - len(key))
        if len(key) != self.ndim:
            raise IndexError(f"too many indices for a view of shape {self.shape}")
        out = []
        for k, n in zip(key, self.shape):
            if isinstance(k, (int, np.integer)):
                k = int(k) + n if k < 0 else int(k)
                if not 0 <= k < n:
                    raise IndexError(f"index {k} out of range for an axis of {n}")
            elif not isinstance(k, slice):
                raise IndexError(f"views take ints and slices, got {k!r}")
            out.append(k)
        return out

    def __getitem__(self, key):
        key = self._key(key)
        ckey = key.pop(-3) if self.has_channels else 0
        src = []
        for a in range(len(self.source.shape)):
            src.append(self.fixed[a] if a in self.fixed else slice(None) if a == self.chan else key[self._free.index(a)])
        block = np.asarray(self.source[tuple(src)])
        if self.chan is None:
            return block
        pos = sum(not isinstance(k, int) for k in src[:self.chan])
        lead = sum(not isinstance(k, int) for k in key[:-2])
        block = np.moveaxis(block, pos, lead)
        return np.take(block, np.asarray(self.keep)[ckey], axis=lead)

    def __array__(self, dtype=None, copy=None):
        out = self[...]
        return out if dtype is None else out.astype(dtype)

    def __len__(self):
        return self.shape[0]


def spatial_shape(shape, channels=1):
    """The (Y, X) or (N, Y, X) shape of an image of ``channels`` channels (axis -3 dropped for C > 1)."""
    shape = tuple(shape)
    return shape[:-3] + shape[-2:] if channels > 1 else shape


def as_chw(plane, channels=1):
    """One plane as (C, Y, X): a (Y, X) plane gains a channel axis of 1."""
    plane = np.asarray(plane)
    return plane[None] if channels == 1 and plane.ndim == 2 else plane


def check_model_channels(model, names, path, model_path="model.pt"):
    """Refuse a slide whose channels the model was not trained on; warn when only their names differ.

    Parameters
    ----------
    model : tileunet.model.UNet
        With ``model.channels`` (names of the training images' channels, None for one).
    names : list of str
        The slide's selected channels (:func:`tileunet.io.open_image`).
    path, model_path : str or Path
        For the messages.
    """
    trained = list(getattr(model, "channels", None) or [])
    if len(names) != model.config.in_channels:
        raise InputError(path, f"has {len(names)} channel(s) {names} as read with ingest.channels, but {model_path} "
                         f"was trained on {model.config.in_channels} {trained or ''}".rstrip(),
                         "predict with the channels the model was trained on (set ingest.channels), or train a "
                         "model on this kind of image")
    if trained and names != trained and not all(n.isdigit() for n in names + trained):
        log.warning("%s: channels %s, but %s was trained on %s; they are taken in this order", path, names,
                    model_path, trained)
