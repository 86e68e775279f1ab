"""The prediction store: OME-Zarr (NGFF 0.5 on Zarr v3) with a probability image and instance labels.

Layout of ``{sample}.ome.zarr``::

    zarr.json              multiscales of the foreground probability, omero window
    0, 1, ...              probability pyramid (float16, or uint8 = round(255 p)), 2x2 mean
    labels/zarr.json       {"ome": {"version": "0.5", "labels": ["cells"]}}
    labels/cells/0, 1, ... int32 instance ids (0 = background), nearest-neighbour pyramid

Axes are (y, x) or (t|z, y, x); a stack's leading axis is never downsampled.  Scales
and units are the input's physical pixel size (:func:`tileunet.pixel_size.pixel_size`) where
it declares one, else pixels.
The NGFF metadata is written with ome-zarr-py's writer (``FormatV05``), the
arrays with zarr so that every chunk is written by exactly one task.
"""

import math
from pathlib import Path

import dask.array as da
import numpy as np
import tifffile
import zarr
from ome_zarr.format import FormatV05
from ome_zarr.writer import add_metadata, write_label_metadata, write_multiscales_metadata

from .errors import InputError

LABELS = "labels/cells"
PROBABILITY_DTYPES = ("float16", "uint8")
UINT8_SCALE = 255.0
SMALL = 2**26
"""Pixels up to which :func:`read_prediction` returns numpy arrays rather than dask arrays."""


def level_shapes(shape, levels):
    """Array shapes of a 2x pyramid: y and x halved per level (rounded up), a leading axis kept.

    Examples
    --------
    >>> level_shapes((3, 101, 64), 3)
    [(3, 101, 64), (3, 51, 32), (3, 26, 16)]
    """
    shapes = [tuple(shape)]
    for _ in range(levels - 1):
        *lead, y, x = shapes[-1]
        shapes.append((*lead, math.ceil(y / 2), math.ceil(x / 2)))
    return shapes


def _transforms(base, level, centred):
    """Scale (and translation) of pyramid ``level`` for level-0 pixel sizes ``base`` (one per axis)."""
    f = 2.0**level
    scale = list(base[:-2]) + [base[-2] * f, base[-1] * f]
    out = [{"type": "scale", "scale": scale}]
    if centred and level:
        # a 2x2 mean's pixel centre lies half a step into its block (NGFF: translation after scale)
        out.append({"type": "translation", "translation": [0.0] * (len(base) - 2) + [b * (f - 1) / 2
                                                                                    for b in base[-2:]]})
    return out


def _datasets(base, levels, centred):
    return [{"path": str(k), "coordinateTransformations": _transforms(base, k, centred)} for k in range(levels)]


def axes_metadata(names, pixel_size=None):
    """NGFF axes and the level-0 scale for axis ``names`` from :func:`tileunet.pixel_size.pixel_size`'s dict.

    Returns
    -------
    axes : list of dict
        ``{"name", "type"[, "unit"]}``; a unit only where the input declares one.
    base : list of float
        Physical size of one level-0 pixel per axis (1.0 where the input declares none).
    """
    pixel_size = pixel_size or {}
    axes, base = [], []
    for name in names:
        size, unit = pixel_size.get(name, (1.0, None))
        axes.append({"name": name, "type": "time" if name == "t" else "space", **({"unit": unit} if unit else {})})
        base.append(float(size))
    return axes, base


def encode_probability(prob, dtype):
    """float probability in [0, 1] -> stored values (float16, or uint8 = round(255 p))."""
    if dtype == "uint8":
        return np.round(np.clip(prob, 0.0, 1.0) * UINT8_SCALE).astype(np.uint8)
    return np.asarray(prob).astype(np.float16)


def decode_probability(stored):
    """Stored values -> float32 probability (inverse of :func:`encode_probability`)."""
    stored = np.asarray(stored)
    if stored.dtype == np.uint8:
        return stored.astype(np.float32) / np.float32(UINT8_SCALE)
    return stored.astype(np.float32)


def create_prediction(path, shape, chunk, probability_dtype="float16", levels=3, leading_axis="t", attrs=None,
                      pixel_size=None):
    """Create an empty prediction store with every array and its NGFF metadata.

    Parameters
    ----------
    path : str or Path
        The ``.ome.zarr`` directory; must not exist.
    shape : tuple of int
        (Y, X) or (N, Y, X) of the slide.
    chunk : int
        Chunk edge (px) along y and x at every level; a stack's chunks hold one plane.
    probability_dtype : {"float16", "uint8"}
    levels : int
        Pyramid levels (>= 1).
    leading_axis : {"t", "z"}
        Name of a stack's leading axis.
    attrs : dict, optional
        Stored under the root attribute ``tileunet``.
    pixel_size : dict, optional
        Axis name -> (size, unit) of the input (:func:`tileunet.pixel_size.pixel_size`): level 0's
        scale and the axes' units, so the prediction overlays the input in its own units
        (e.g. ``{"y": (0.65, "micrometer"), "x": (0.65, "micrometer")}``); pixels if omitted.

    Returns
    -------
    zarr.Group
    """
    if probability_dtype not in PROBABILITY_DTYPES:
        raise ValueError(f"probability_dtype must be one of {PROBABILITY_DTYPES}, got {probability_dtype!r}")
    if len(shape) not in (2, 3) or leading_axis not in ("t", "z"):
        raise ValueError(f"need a (Y, X) or (N, Y, X) shape and leading_axis t or z, got {shape}, {leading_axis!r}")
    axes, base = axes_metadata(["y", "x"] if len(shape) == 2 else [leading_axis, "y", "x"], pixel_size)
    names = [a["name"] for a in axes]
    chunks = (1,) * (len(shape) - 2) + (chunk, chunk)
    root = zarr.open_group(Path(path), mode="w-", zarr_format=3)
    labels = root.create_group("labels").create_group("cells")
    for k, s in enumerate(level_shapes(shape, levels)):
        c = tuple(min(a, b) for a, b in zip(chunks, s))
        root.create_array(str(k), shape=s, dtype=probability_dtype, chunks=c, fill_value=0, dimension_names=names)
        labels.create_array(str(k), shape=s, dtype="int32", chunks=c, fill_value=0, dimension_names=names)
    fmt = FormatV05()
    top = 255 if probability_dtype == "uint8" else 1
    omero = {"channels": [{"label": "foreground probability", "color": "FFFFFF", "active": True,
                           "window": {"min": 0, "max": top, "start": 0, "end": top}}]}
    write_multiscales_metadata(root, _datasets(base, levels, True), fmt=fmt, axes=axes,
                               name="foreground probability", metadata={"omero": omero})
    write_multiscales_metadata(labels, _datasets(base, levels, False), fmt=fmt, axes=axes, name="cells")
    write_label_metadata(root["labels"], "cells", fmt=fmt, source={"image": "../../"})
    # ome-zarr 0.18's add_metadata leaves the "version" out of the labels group's "ome" block,
    # which NGFF 0.5 requires there too (ome-zarr-models then finds no labels)
    add_metadata(root["labels"], {"version": fmt.version}, fmt=fmt)
    root.attrs["tileunet"] = dict(attrs or {})
    return root


def _mean2(block):
    """2x2 mean of the last two axes; an odd edge averages the pixels it has."""
    b = np.asarray(block, dtype=np.float32)
    pad = [(0, 0)] * (b.ndim - 2) + [(0, s % 2) for s in b.shape[-2:]]
    b = np.pad(b, pad, mode="edge")  # a copied edge leaves the mean of the real pixels unchanged
    return 0.25 * (b[..., ::2, ::2] + b[..., 1::2, ::2] + b[..., ::2, 1::2] + b[..., 1::2, 1::2])


def downsample_probability(block):
    """One pyramid step of stored probability values (2x2 mean, same dtype)."""
    block = np.asarray(block)
    mean = _mean2(block)
    return np.round(mean).astype(np.uint8) if block.dtype == np.uint8 else mean.astype(block.dtype)


def downsample_labels(block):
    """One pyramid step of labels: nearest neighbour (every second pixel), so ids stay ids."""
    return np.asarray(block)[..., ::2, ::2]


def write_pyramid(group, func):
    """Fill levels 1, 2, ... of ``group`` from level 0, chunk by chunk with dask.

    Each output chunk is computed from the 2x larger aligned block of the
    level below, so every task writes exactly one chunk.
    """
    k = 1
    while str(k) in group:
        src, dst = group[str(k - 1)], group[str(k)]
        read_chunks = src.chunks[:-2] + tuple(2 * c for c in dst.chunks[-2:])
        x = da.from_zarr(src, chunks=read_chunks)
        out_chunks = x.chunks[:-2] + tuple(tuple(math.ceil(c / 2) for c in cs) for cs in x.chunks[-2:])
        y = x.map_blocks(func, chunks=out_chunks, dtype=dst.dtype)
        da.store(y, dst, lock=False)
        k += 1


def guess_leading_axis(path):
    """``"t"`` or ``"z"`` for a stack's leading axis, from OME-TIFF / OME-Zarr axes; ``"t"`` if unknown."""
    path = Path(path)
    axes = ""
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            with tifffile.TiffFile(path) as tif:
                axes = tif.series[0].axes.lower()
        elif path.is_dir():
            ms = zarr.open_group(path, mode="r").attrs.asdict()
            ms = ms.get("ome", ms).get("multiscales", [{}])[0]
            axes = "".join((a["name"] if isinstance(a, dict) else a) for a in ms.get("axes", [])).lower()
    except Exception:  # a guess: the sample's reader reports unreadable files itself
        return "t"
    lead = [a for a in axes if a in "tzcq" and a not in "yx"]
    sizes = [a for a in lead if a in "tz"]
    return sizes[0] if len(sizes) == 1 else "t"


def read_prediction(path, max_pixels=SMALL):
    """Probability and instance labels at full resolution.

    Parameters
    ----------
    path : str or Path
        A store written by :func:`tileunet.segment.predict_to_ome_zarr`.
    max_pixels : int
        Up to this many pixels numpy arrays are returned; above, lazy dask arrays.

    Returns
    -------
    probability : float32 array, shape (Y, X) or (N, Y, X)
    labels : int32 array, same shape
    """
    path = Path(path)
    try:
        root = zarr.open_group(path, mode="r")
        prob, labels = root["0"], root[f"{LABELS}/0"]
    except Exception as exc:
        raise InputError(path, f"is not a tileunet prediction store ({exc})",
                         "re-run the prediction (snakemake --forcerun predict_sample)") from exc
    if math.prod(prob.shape) <= max_pixels:
        return decode_probability(prob[...]), np.asarray(labels[...], dtype=np.int32)
    return da.from_zarr(prob).map_blocks(decode_probability, dtype=np.float32), da.from_zarr(labels)
