"""Overlap-tile inference (paper section 2, figure 2): whole-image reference and the chunked pipeline.

Each output chunk is predicted from its input window, the chunk grown by the
network's margin on every side and read from the neighbouring pixels; outside
the slide the context is mirrored (``numpy.pad(mode="symmetric")``).  With
valid convolutions the chunked result equals one forward pass over the whole
mirror-padded image, :func:`predict_image`, provided every chunk starts on the
2x2 pooling grid of that pass: chunk origins are multiples of ``2**(depth-1)``.
The paper's output tiles (388 at depth 5, 4 mod 16) are not, so a chunk is the
configured tile rounded down to that multiple and the network still computes
the full tile (the few extra rows are cropped).

The store pipeline, in steps that can run as separate jobs:

1. :func:`prepare` creates the work store (arrays, NGFF metadata, per-plane
   intensity ranges, a fingerprint of model, slide and tiling).
2. :func:`predict_rows` fills chunk rows ``[r0, r1)`` of every plane, in
   batches of chunks on dask's threaded scheduler (or a ``dask.distributed``
   scheduler); each chunk is written by one task and then marked done, so a
   killed run resumes where it stopped.
3. :func:`finalise` labels the thresholded probability consistently across
   chunks (:mod:`tileunet.instances`) and fills both pyramids.
4. :func:`publish` renames the finished store into place.

:func:`predict_to_ome_zarr` runs all four.
"""

import dataclasses
import functools
import hashlib
import json
import logging
import math
import os
import shutil
import sys
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import torch
import zarr
from dask.callbacks import Callback
from tqdm import tqdm

from . import __version__, ome, postprocess
from .device import autocast
from .errors import InputError
from .model import margin
from .normalize import apply_range, intensity_range
from .tiles import read_window

log = logging.getLogger(__name__)

STORE = "prediction.ome.zarr"
SCRATCH = "scratch.zarr"
"""Work arrays that are not published: the seed map of a border-class model, the watershed's anchored ids."""
DONE = "done"


@dataclasses.dataclass(frozen=True)
class Tiling:
    """Geometry of the chunked prediction (all in px).

    Attributes
    ----------
    chunk : int
        Output chunk edge: the stored chunk and the stride of the windows.
    window : int
        Network input edge.
    offset : int
        A chunk at (y, x) reads the window at (y - offset, x - offset).
    crop : int
        The chunk starts at this index of the network output.
    """

    chunk: int
    window: int
    offset: int
    crop: int


def plan_tiling(model, tile):
    """The :class:`Tiling` for output tile edge ``tile`` of ``model``.

    Parameters
    ----------
    model : tileunet.model.UNet
    tile : int
        Network output edge; for a valid-convolution net one it can produce
        (``model.input_size(tile)`` exists), for a same-padding net a multiple
        of ``2**(depth-1)``.

    Returns
    -------
    Tiling

    Notes
    -----
    Same-padding nets (not the paper) read a halo of the valid net's margin and
    keep the centre; their chunks then differ slightly from the whole-image
    pass, the zero padding inside every window being different.
    """
    depth, padding = model.config.depth, model.config.padding
    align = 2 ** (depth - 1)
    if padding == "valid":
        if int(tile) != tile or model.input_size(int(tile)) is None:
            near = [o for o in range(max(1, tile - 8 * align), tile + 8 * align) if model.input_size(o)]
            near = sorted(near, key=lambda o: abs(o - tile))[:4]
            raise ValueError(f"predict tile {tile} is not an output edge of this depth-{depth} valid U-Net. "
                             f"Fix: set predict.tile to one of {sorted(near)}")
        chunk = tile - tile % align
        if chunk == 0:
            raise ValueError(f"predict tile {tile} is smaller than the pooling grid {align}. "
                             f"Fix: set predict.tile to at least {_smallest_output(model, align)}")
        return Tiling(chunk, model.input_size(tile), model.margin, 0)
    if tile % align or tile <= 0:
        raise ValueError(f"predict tile {tile} must be a positive multiple of {align} for a depth-{depth} "
                         f"same-padding U-Net. Fix: set predict.tile to {max(align, tile - tile % align)}")
    halo = -(-margin(depth, "valid") // align) * align
    return Tiling(tile, tile + 2 * halo, halo, halo)


def normalization_params(model):
    """(low, high) percentiles from ``model.normalization`` (section "normalize" of design.md)."""
    norm = dict(getattr(model, "normalization", None) or {})
    if norm.get("method", "percentile") != "percentile":
        raise ValueError(f"model normalization {norm.get('method')!r} is unknown to this tileunet "
                         f"({__version__}). Fix: re-train the model with this version")
    return float(norm.get("low", 1.0)), float(norm.get("high", 99.8))


def check_image(image, path="image"):
    """Refuse what the pipeline cannot segment: not (Y, X) / (N, Y, X), empty, or not real numbers."""
    shape, dtype = tuple(image.shape), np.dtype(image.dtype)
    if len(shape) not in (2, 3) or 0 in shape:
        raise InputError(path, f"has shape {shape}; prediction takes a 2D (Y, X) image or an (N, Y, X) stack",
                         "export one channel as a 2D image or a Z/T stack")
    if dtype.kind not in "biuf":
        raise InputError(path, f"has dtype {dtype}", "convert it to an integer or floating-point grey image")


#: The 8 symmetries of the square as (quarter turns, mirrored) for test-time augmentation.
DIHEDRAL = tuple((k, flip) for flip in (False, True) for k in range(4))


def _forward(model, batch, amp=False, tta=False):
    """Soft-max class probabilities of a batch: (B, s, s) float32 -> (B, classes, o, o) float32.

    With ``tta`` the mean over the 8 flips and quarter turns of the input,
    each output turned back (not in the paper; exact under overlap-tile, as
    every turn of a valid tile is a valid tile).
    """
    device = next(model.parameters()).device
    x = torch.from_numpy(np.ascontiguousarray(batch))[:, None].to(device)  # (B, 1, s, s)
    total = None
    with torch.inference_mode(), autocast(device, amp):
        for k, flip in DIHEDRAL if tta else DIHEDRAL[:1]:
            t = torch.rot90(x.flip(-1) if flip else x, k, dims=(-2, -1))
            prob = torch.rot90(torch.softmax(model(t).float(), dim=1), -k, dims=(-2, -1))
            prob = prob.flip(-1) if flip else prob
            total = prob if total is None else total + prob
    return (total / (len(DIHEDRAL) if tta else 1)).cpu().numpy()


def class_maps(prob):
    """Probability maps the instance step uses, from the soft-max of a two- or three-class model.

    Parameters
    ----------
    prob : numpy.ndarray of float32, shape (B, C, h, w)
        C = 2 (background, cell) or 3 (background, cell interior, cell border).

    Returns
    -------
    numpy.ndarray of float32, shape (B, K, h, w)
        K = 1: the foreground probability; K = 2: the foreground (interior +
        border) and the interior probability, the watershed's seed map.
    """
    if prob.shape[1] == 2:
        return prob[:, 1:2]
    return np.stack([prob[:, 1] + prob[:, 2], prob[:, 1]], axis=1)


def _smallest_output(model, n):
    """Smallest output edge >= n that the network can produce."""
    o = n
    while model.input_size(o) is None:
        o += 1
    return o


def forward_plane(model, plane, tta=False):
    """Whole-plane maps of a normalised 2D plane: one forward pass over its mirror-padded extent.

    Parameters
    ----------
    model : tileunet.model.UNet
        In eval mode.
    plane : numpy.ndarray of float32, shape (Y, X)
        Already normalised (as the arrays of ``results/data``).
    tta : bool
        Average over the 8 flips and quarter turns (:func:`_forward`).

    Returns
    -------
    numpy.ndarray of float32, shape (K, Y, X)
        See :func:`class_maps`.

    Notes
    -----
    Padded by ``numpy.pad(mode="symmetric")``: the model margin before, the
    margin plus what reaches a valid size after (paper section 2, figure 2).
    """
    m = model.margin
    size = [model.input_size(_smallest_output(model, n)) for n in plane.shape]
    padded = np.pad(plane, [(m, s - n - m) for s, n in zip(size, plane.shape)], mode="symmetric")
    return class_maps(_forward(model, padded[None], tta=tta))[0, :, :plane.shape[0], :plane.shape[1]]


def predict_maps(model, image, tta=False):
    """:func:`forward_plane` of a raw 2D image, normalised as in training: (K, Y, X) float32."""
    image = np.asarray(image)
    check_image(image)
    if image.ndim != 2:
        raise ValueError(f"predict_image takes one 2D plane, got shape {image.shape}")
    return forward_plane(model, apply_range(image, *intensity_range(image, *normalization_params(model))), tta)


def predict_image(model, image, tta=False):
    """Whole-image reference: one forward pass over the mirror-padded 2D image.

    Parameters
    ----------
    model : tileunet.model.UNet
        In eval mode; ``model.normalization`` gives the percentiles.
    image : array-like, shape (Y, X)
        Raw intensities.
    tta : bool
        Average over the 8 flips and quarter turns.

    Returns
    -------
    numpy.ndarray of float32, shape (Y, X)
        Foreground probability (soft-max of class 1; of classes interior and
        border for a border-class model).

    Notes
    -----
    Normalised per plane as in training (:mod:`tileunet.normalize`), then
    :func:`forward_plane`.
    """
    return predict_maps(model, image, tta)[0]


def grid_of(shape, chunk):
    """(N, ny, nx): planes and chunk rows / columns of a (Y, X) or (N, Y, X) slide."""
    n = shape[0] if len(shape) == 3 else 1
    return n, math.ceil(shape[-2] / chunk), math.ceil(shape[-1] / chunk)


def chunk_slices(shape, chunk, p, cy, cx):
    """Index of chunk (p, cy, cx) in an array of ``shape`` (clipped at the edge)."""
    box = (slice(cy * chunk, min((cy + 1) * chunk, shape[-2])), slice(cx * chunk, min((cx + 1) * chunk, shape[-1])))
    return box if len(shape) == 2 else (p, *box)


def input_window(image, plane, cy, cx, tiling):
    """Raw network input of chunk (cy, cx): (window, window), mirrored outside the plane.

    Reads only the bounding box of the pixels it needs.
    """
    c = tiling.chunk
    return read_window(image, None if image.ndim == 2 else plane, cy * c - tiling.offset, cx * c - tiling.offset,
                       tiling.window, tiling.window)


def predict_tiles(model, image, plane, origins, tiling, lo, hi, amp=False, tta=False):
    """Maps of chunks ``origins`` = [(cy, cx), ...] of one plane, one forward pass.

    Returns
    -------
    list of numpy.ndarray of float32, each the chunk's (K, h, w), clipped at the slide edge
        K maps as :func:`class_maps`.
    """
    batch = np.stack([apply_range(input_window(image, plane, cy, cx, tiling), lo, hi) for cy, cx in origins])
    if not np.isfinite(batch).all():
        bad = [o for o, window in zip(origins, batch) if not np.isfinite(window).all()]
        raise ValueError(f"NaN or infinite pixels in the input windows of chunks (row, column) {bad} of plane {plane}")
    maps = class_maps(_forward(model, batch, amp, tta))
    c, k = tiling.chunk, tiling.crop
    out = []
    for (cy, cx), tile in zip(origins, maps):
        h, w = min(c, image.shape[-2] - cy * c), min(c, image.shape[-1] - cx * c)
        out.append(tile[:, k:k + h, k:k + w])
    return out


def plane_maps(model, plane, tile, batch_size=4, tta=False):
    """Maps of one normalised 2D plane, tile by tile (equal to :func:`forward_plane`, in bounded memory).

    Parameters
    ----------
    model : tileunet.model.UNet
        In eval mode.
    plane : numpy.ndarray of float32, shape (Y, X)
        Already normalised (as the arrays of ``results/data``).
    tile : int
        Output tile edge (see :func:`plan_tiling`).
    batch_size : int
        Tiles per forward pass.
    tta : bool
        Average over the 8 flips and quarter turns.

    Returns
    -------
    numpy.ndarray of float32, shape (K, Y, X)
        See :func:`class_maps`.
    """
    t = plan_tiling(model, tile)
    _, ny, nx = grid_of(plane.shape, t.chunk)
    origins = [(cy, cx) for cy in range(ny) for cx in range(nx)]
    out = np.zeros((model.config.n_classes - 1,) + plane.shape, np.float32)
    for i in range(0, len(origins), batch_size):
        batch = origins[i:i + batch_size]
        for (cy, cx), maps in zip(batch, predict_tiles(model, plane, None, batch, t, 0.0, 1.0, tta=tta)):
            out[(slice(None), *chunk_slices(plane.shape, t.chunk, 0, cy, cx))] = maps
    return out


def plane_ranges(model, image):
    """Per-plane (lo, hi) intensity range, read lazily (a strided sample of each plane)."""
    low, high = normalization_params(model)
    lazy = da.from_array(image, chunks=(1,) * (image.ndim - 2) + (2048, 2048))
    planes = [lazy] if image.ndim == 2 else [lazy[p] for p in range(image.shape[0])]
    return [intensity_range(plane, low, high) for plane in planes]


def probability(model, image, tile, batch_size=4, amp=False, ranges=None):
    """The chunked foreground probability as a lazy dask array (in-memory use, notebooks, tests).

    Parameters
    ----------
    model : tileunet.model.UNet
    image : array-like, shape (Y, X) or (N, Y, X)
    tile : int
        Output tile edge (see :func:`plan_tiling`).
    batch_size : int
        Chunks per forward pass: each dask block holds up to this many chunks along x.
    ranges : list of (float, float), optional
        Per-plane intensity range; computed with :func:`plane_ranges` if omitted.

    Returns
    -------
    dask.array.Array of float32, image's shape
        Chunks (1,) * (ndim - 2) + (chunk, batch_size * chunk).
    """
    check_image(image)
    t = plan_tiling(model, tile)
    ranges = ranges or plane_ranges(model, image)
    c = t.chunk

    def block(block_info=None):
        loc = block_info[None]["array-location"]
        p = loc[0][0] if image.ndim == 3 else 0
        (y0, _), (x0, x1) = loc[-2:]
        origins = [(y0 // c, cx) for cx in range(x0 // c, math.ceil(x1 / c))]
        tiles = predict_tiles(model, image, p, origins, t, *ranges[p], amp)
        return np.concatenate([tile[0] for tile in tiles], axis=1).reshape(block_info[None]["chunk-shape"])

    chunks = (1,) * (image.ndim - 2) + (c, batch_size * c)
    chunks = da.core.normalize_chunks(chunks, image.shape)
    return da.map_blocks(block, chunks=chunks, dtype=np.float32, meta=np.empty((0,) * image.ndim, np.float32))


# --- the store pipeline -------------------------------------------------------------------------


def model_digest(model):
    """sha256 of the model's config and weights (identifies the model a work store was made with)."""
    h = hashlib.sha256(json.dumps(dataclasses.asdict(model.config), sort_keys=True).encode())
    for name, tensor in model.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _read_meta(work):
    try:
        return dict(zarr.open_group(Path(work) / STORE, mode="r").attrs["tileunet"])
    except Exception:  # absent or half-created: start over
        return None


def prepare(model, image, work, tile, probability_dtype="float16", pyramid_levels=3, leading_axis="t", source="",
            tta=False, pixel_size=None):
    """Create the work store for ``image``, or keep the one a killed run left if it matches.

    Parameters
    ----------
    model : tileunet.model.UNet
    image : array-like, (Y, X) or (N, Y, X)
    work : str or Path
        Work folder: holds the store (``prediction.ome.zarr``) and the done markers.
    tile, probability_dtype, pyramid_levels, leading_axis, tta
        See :func:`predict_to_ome_zarr`.
    source : str
        Identifies the slide (path, size, mtime): a work folder made for another is discarded.
    pixel_size : dict, optional
        The slide's physical pixel size per axis (:func:`tileunet.io.pixel_size`), written
        into the store's NGFF scales and units.

    Returns
    -------
    dict
        The store's ``tileunet`` attributes (tiling, ranges, fingerprint).
    """
    check_image(image, source or "image")
    t = plan_tiling(model, tile)
    key = {"tileunet_version": __version__, "model": model_digest(model), "source": str(source),
           "shape": list(image.shape), "dtype": str(np.dtype(image.dtype)), "tiling": dataclasses.asdict(t),
           "probability_dtype": probability_dtype, "pyramid_levels": pyramid_levels, "leading_axis": leading_axis,
           "tta": bool(tta), "pixel_size": {a: list(v) for a, v in sorted((pixel_size or {}).items())}}
    work = Path(work)
    meta = _read_meta(work)
    if meta is not None and meta.get("key") == key:
        log.info("resuming %s: %d chunks already done", work, len(_done(work)))
        return meta
    if work.exists():
        log.info("discarding %s: made for another model, slide or setting", work)
        shutil.rmtree(work)
    meta = {"key": key, "ranges": [list(r) for r in plane_ranges(model, image)]}
    bad = [p for p, r in enumerate(meta["ranges"]) if not np.isfinite(r).all()]
    if bad:
        raise InputError(_slide_path(source), f"has NaN or infinite pixels (planes {bad})",
                         "replace them (e.g. with the background value) before predicting")
    tmp = work.with_name(f".{work.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    ome.create_prediction(tmp / STORE, image.shape, t.chunk, probability_dtype, pyramid_levels, leading_axis, meta,
                          pixel_size=pixel_size)
    scratch = zarr.open_group(tmp / SCRATCH, mode="w-", zarr_format=3)
    chunks = (1,) * (image.ndim - 2) + (t.chunk, t.chunk)
    if model.config.n_classes == 3:
        scratch.create_array("seeds", shape=image.shape, dtype=probability_dtype, chunks=chunks, fill_value=0)
    scratch.create_array("anchored", shape=image.shape, dtype="int64", chunks=chunks, fill_value=0)
    (tmp / DONE).mkdir()
    os.replace(tmp, work)  # a store half-created by a crash is never taken for a resumable one
    return meta


def _slide_path(source):
    """The path part of a work store's ``source`` (path, size, mtime)."""
    parts = str(source).rsplit(" ", 2)
    return parts[0] if len(parts) == 3 else (source or "image")


def _done(work):
    return set(os.listdir(Path(work) / DONE))


def _marker(p, cy, cx):
    return f"{p}.{cy}.{cx}"


def bands(n_rows, parts):
    """``parts`` bands of whole chunk rows, as [(r0, r1), ...] covering ``0..n_rows`` (scatter-gather).

    Examples
    --------
    >>> bands(7, 3)
    [(0, 2), (2, 4), (4, 7)]
    """
    edges = [i * n_rows // parts for i in range(parts + 1)]
    return [(a, b) for a, b in zip(edges[:-1], edges[1:])]


def band_rows(work, part, parts):
    """Chunk rows ``(r0, r1)`` of band ``part`` (0-based) of ``parts`` for the store in ``work``."""
    meta = zarr.open_group(Path(work) / STORE, mode="r").attrs["tileunet"]
    n_rows = grid_of(tuple(meta["key"]["shape"]), meta["key"]["tiling"]["chunk"])[1]
    if not 0 <= part < parts:
        raise ValueError(f"part {part} is not one of 0..{parts - 1}")
    return bands(n_rows, parts)[part]


@functools.lru_cache(maxsize=4)
def _load(path, device):
    from .device import select_device
    from .model import load_model
    return load_model(path, select_device(device))


@functools.lru_cache(maxsize=4)
def _open(path):
    from .io import open_array
    return open_array(path)


def _run_batch(model, image, work, p, origins, amp):
    """One task: predict chunks ``origins`` of plane ``p``, write them, mark them done; returns their count."""
    # a path (dask.distributed) loads the model / opens the slide once per worker process
    model = _load(str(model[0]), model[1]) if isinstance(model, tuple) else model
    image = _open(image) if isinstance(image, str) else image
    store = zarr.open_group(Path(work) / STORE, mode="r+")
    meta = store.attrs["tileunet"]
    key = meta["key"]
    t = Tiling(**key["tiling"])
    arrays = [store["0"]] + ([zarr.open_array(Path(work) / SCRATCH / "seeds", mode="r+")]
                             if model.config.n_classes == 3 else [])
    try:
        tiles = predict_tiles(model, image, p, origins, t, *meta["ranges"][p], amp, key.get("tta", False))
    except ValueError as exc:
        raise InputError(_slide_path(key["source"]), str(exc), "replace NaN/inf pixels (e.g. with the background "
                         "value) before predicting; no prediction was published") from exc
    for (cy, cx), maps in zip(origins, tiles):
        for arr, m in zip(arrays, maps):
            arr[chunk_slices(arr.shape, t.chunk, p, cy, cx)] = ome.encode_probability(m, key["probability_dtype"])
        (Path(work) / DONE / _marker(p, cy, cx)).touch()  # after the write: a marked chunk is complete
    return len(origins)


class _Progress(Callback):
    """Feeds the chunk counts returned by finished batch tasks to a tqdm bar."""

    def __init__(self, keys, bar):
        super().__init__()
        self.keys, self.bar = keys, bar

    def _posttask(self, key, result, dsk, state, worker_id):
        if key in self.keys:
            self.bar.update(result)


def _progress_bar(total, initial, desc, progress):
    return tqdm(total=total, initial=initial, desc=desc, unit="chunk", file=sys.stderr, disable=not progress,
                mininterval=1.0, smoothing=0.1)


def predict_rows(model, image, work, rows=None, batch_size=4, amp=False, workers=1, scheduler_address="",
                 progress=True):
    """Predict chunk rows ``[r0, r1)`` of every plane into the work store; skip chunks already done.

    Parameters
    ----------
    model : tileunet.model.UNet, or (path, device)
        A model object is shared by the local threads; a (model.pt path,
        device name) pair is loaded once per worker process (needed with a
        ``dask.distributed`` scheduler).
    image : array-like or str
        The slide, or its path (opened with :func:`tileunet.io.open_array`
        on each worker).
    work : str or Path
        Work folder made by :func:`prepare`.
    rows : (int, int), optional
        Chunk rows to do; all by default.
    batch_size : int
        Chunks per forward pass (one task).
    workers : int
        Threads of the local dask scheduler (tasks in flight).
    scheduler_address : str
        A ``dask.distributed`` scheduler to run the tasks on instead.

    Returns
    -------
    int
        Chunks predicted by this call.
    """
    store = zarr.open_group(Path(work) / STORE, mode="r")
    meta = store.attrs["tileunet"]
    shape, chunk = tuple(meta["key"]["shape"]), meta["key"]["tiling"]["chunk"]
    n, ny, nx = grid_of(shape, chunk)
    r0, r1 = rows or (0, ny)
    if not 0 <= r0 <= r1 <= ny:
        raise ValueError(f"rows {rows} outside the {ny} chunk rows of {work}")
    done = _done(work)
    todo = [[(cy, cx) for cy in range(r0, r1) for cx in range(nx) if _marker(p, cy, cx) not in done]
            for p in range(n)]
    batches = [(p, o[i:i + batch_size]) for p, o in enumerate(todo) for i in range(0, len(o), batch_size)]
    total = n * (r1 - r0) * nx
    pending = sum(len(o) for o in todo)
    tasks = [dask.delayed(_run_batch, pure=False)(model, image, str(work), p, origins, amp) for p, origins in batches]
    with _progress_bar(total, total - pending, "predict", progress) as bar:
        if scheduler_address:
            from distributed import Client, as_completed  # optional: only for a multi-GPU node
            with Client(scheduler_address) as client:
                for future in as_completed(client.compute(tasks)):
                    bar.update(future.result())
        else:
            with _Progress({t.key for t in tasks}, bar):
                dask.compute(*tasks, scheduler="threads", num_workers=workers)
    return pending


def finalise(work, pp, halo=0, workers=1, progress=True):
    """Instance labels, both pyramids and completion metadata of a fully predicted work store.

    Labels come from the probability as stored (so the store agrees with
    itself), by ``pp``'s method (:mod:`tileunet.postprocess`), one id per cell
    across chunk borders.  Idempotent.

    Parameters
    ----------
    work : str or Path
    pp : tileunet.postprocess.PostProcessing
    halo : int
        Context (px) around each chunk for the watershed (the largest
        touching group of cells expected); unused by components.
    workers : int
        Local dask threads.
    progress : bool

    Returns
    -------
    int
        Number of instances.
    """
    work = Path(work)
    root = zarr.open_group(work / STORE, mode="r+")
    meta = dict(root.attrs["tileunet"])
    shape, chunk = tuple(meta["key"]["shape"]), meta["key"]["tiling"]["chunk"]
    grid = grid_of(shape, chunk)
    missing = math.prod(grid) - len(_done(work))
    if missing:
        raise ValueError(f"{work}: {missing} chunks are not predicted yet. Fix: run predict_rows over every band first")
    scratch = zarr.open_group(work / SCRATCH, mode="r+")
    seeds = scratch["seeds"] if "seeds" in scratch else None
    with _progress_bar(2 * math.prod(grid), 0, "labels", progress) as bar:
        n_inst, beyond = postprocess.label_chunked(root["0"], seeds, scratch["anchored"], root[f"{ome.LABELS}/0"],
                                                   chunk, halo, pp, ome.decode_probability, workers, bar.update)
    if beyond:
        log.warning("%d instances reach beyond the %d px halo of their chunk, so their labels may depend on the "
                    "chunking. Fix: raise predict.max_object_size above their extent", beyond, halo)
    ome.write_pyramid(root, ome.downsample_probability)
    ome.write_pyramid(root[ome.LABELS], ome.downsample_labels)
    root.attrs["tileunet"] = {**meta, "postprocessing": pp.as_dict(), "halo": halo, "instances": n_inst,
                              "instances_beyond_halo": beyond}
    return n_inst


def publish(work, output):
    """Move the finished store to ``output`` (replacing an old one) and remove the work folder."""
    work, output = Path(work), Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    if output.exists():
        old = output.with_name(f".{output.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(output, old)
        os.replace(work / STORE, output)
        shutil.rmtree(old)
    else:
        os.replace(work / STORE, output)
    shutil.rmtree(work)
    return output


def predict_to_ome_zarr(model, image, output, work, tile, pp, batch_size=4, halo=0, tta=False,
                        probability_dtype="float16", pyramid_levels=3, leading_axis="t", amp=False, workers=1,
                        scheduler_address="", source="", progress=True):
    """Segment a slide or stack into ``output`` (OME-Zarr), resumably; memory bounded by a few chunks.

    Parameters
    ----------
    model : tileunet.model.UNet
        In eval mode on its device.
    image : array-like, shape (Y, X) or (N, Y, X)
        Raw slide, read lazily window by window (zarr, tifffile's zarr store, numpy).
    output : str or Path
        The ``.ome.zarr`` to write; appears only when complete.
    work : str or Path
        Work folder; a run killed half way resumes from it.
    tile : int
        Network output tile edge (px), see :func:`plan_tiling`.
    pp : tileunet.postprocess.PostProcessing
        How instances are extracted from the probability.
    batch_size : int
        Chunks per forward pass.
    halo : int
        Context (px) of the chunked watershed (:func:`finalise`).
    tta : bool
        Test-time augmentation: mean over the 8 flips and quarter turns.
    probability_dtype : {"float16", "uint8"}
    pyramid_levels : int
    leading_axis : {"t", "z"}
        Axis name of a stack's planes.
    amp : bool
        bf16 autocast on CUDA (changes results against the float32 reference).
    workers : int
        Local dask threads.
    scheduler_address : str
        ``dask.distributed`` scheduler; ``model`` must then be a (path, device) pair
        and ``image`` a path.
    source : str
        Identity of the slide for resuming (path, size, mtime).

    Returns
    -------
    int
        Number of instances.
    """
    model_obj = _load(str(model[0]), model[1]) if isinstance(model, tuple) else model
    image_obj = _open(image) if isinstance(image, str) else image
    prepare(model_obj, image_obj, work, tile, probability_dtype, pyramid_levels, leading_axis, source, tta)
    predict_rows(model, image, work, None, batch_size, amp, workers, scheduler_address, progress)
    n_inst = finalise(work, pp, halo, workers, progress)
    publish(work, output)
    return n_inst
