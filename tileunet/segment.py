"""Segment a slide into its OME-Zarr store: chunked, resumable, and scattered over jobs if asked.

The steps, each of which can run as a separate job:

1. :func:`prepare` creates the work store (arrays, NGFF metadata, per-plane
   intensity ranges, a fingerprint of model, slide and tiling).
2. :func:`predict_rows` fills chunk rows ``[r0, r1)`` of every plane, in
   batches of chunks on dask's threaded scheduler (or a ``dask.distributed``
   scheduler); each chunk is written by one task and then marked done, so a
   killed run resumes where it stopped.
3. :func:`finalise` extracts the instances consistently across chunks
   (:mod:`tileunet.postprocess`) and fills both pyramids.
4. :func:`publish` renames the finished store into place.

:func:`predict_to_ome_zarr` runs all four.  The model is a
:class:`~tileunet.model.UNet`, or a :class:`ModelFile` that each worker
process loads once (``dask.distributed``).
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
import numpy as np
import zarr
from dask.callbacks import Callback
from tqdm import tqdm

from . import __version__, ome, postprocess
from .channels import spatial_shape
from .errors import InputError
from .predict import check_image, plane_ranges, predict_tiles
from .tiling import TilePlan, bands, chunk_slices, grid_of, plan_tiling

log = logging.getLogger(__name__)

STORE = "prediction.ome.zarr"
SCRATCH = "scratch.zarr"
"""Work arrays that are not published: the seed map of a border-class model, the watershed's anchored ids."""
DONE = "done"



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
    image : array-like, (Y, X) or (N, Y, X); (C, Y, X) or (N, C, Y, X) for a model of C > 1 channels
    work : str or Path
        Work folder: holds the store (``prediction.ome.zarr``) and the done markers.
    tile, probability_dtype, pyramid_levels, leading_axis, tta
        See :func:`predict_to_ome_zarr`.
    source : str
        Identifies the slide (path, size, mtime): a work folder made for another is discarded.
    pixel_size : dict, optional
        The slide's physical pixel size per axis (:func:`tileunet.pixel_size.pixel_size`), written
        into the store's NGFF scales and units.

    Returns
    -------
    dict
        The store's ``tileunet`` attributes (tiling, ranges, fingerprint).
    """
    channels = model.config.in_channels
    check_image(image, source or "image", channels)
    if channels > 1 and image.shape[-3] != channels:
        raise InputError(_slide_path(source), f"has {image.shape[-3]} channels (shape {tuple(image.shape)}), the "
                         f"model {channels}", "predict with the channels the model was trained on (ingest.channels)")
    shape = spatial_shape(image.shape, channels)
    t = plan_tiling(model, tile)
    key = {"tileunet_version": __version__, "model": model_digest(model), "source": str(source),
           "shape": list(shape), "dtype": str(np.dtype(image.dtype)), "tiling": dataclasses.asdict(t),
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
    ome.create_prediction(tmp / STORE, shape, t.chunk, probability_dtype, pyramid_levels, leading_axis, meta,
                          pixel_size=pixel_size)
    scratch = zarr.open_group(tmp / SCRATCH, mode="w-", zarr_format=3)
    chunks = (1,) * (len(shape) - 2) + (t.chunk, t.chunk)
    if model.config.n_classes == 3:
        scratch.create_array("seeds", shape=shape, dtype=probability_dtype, chunks=chunks, fill_value=0)
    scratch.create_array("anchored", shape=shape, dtype="int64", chunks=chunks, fill_value=0)
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


def band_rows(work, part, parts):
    """Chunk rows ``(r0, r1)`` of band ``part`` (0-based) of ``parts`` for the store in ``work``."""
    meta = zarr.open_group(Path(work) / STORE, mode="r").attrs["tileunet"]
    n_rows = grid_of(tuple(meta["key"]["shape"]), meta["key"]["tiling"]["chunk"])[1]
    if not 0 <= part < parts:
        raise ValueError(f"part {part} is not one of 0..{parts - 1}")
    return bands(n_rows, parts)[part]


@dataclasses.dataclass(frozen=True)
class ModelFile:
    """A model.pt and the device to run it on, loaded once per process (for ``dask.distributed`` workers)."""

    path: str
    device: str = "cpu"

    def load(self):
        return _load(str(self.path), str(self.device))


@functools.lru_cache(maxsize=4)
def _load(path, device):
    from .device import select_device
    from .model import load_model
    return load_model(path, select_device(device))


@dataclasses.dataclass(frozen=True)
class SlideFile:
    """A slide path, the channels to read (``ingest.channels`` as a tuple) and its level, opened once per process."""

    path: str
    channels: tuple = None
    level: int = 0

    def load(self):
        return _open(str(self.path), self.channels, self.level)


@functools.lru_cache(maxsize=4)
def _open(path, channels, level=0):
    from .io import open_image
    return open_image(path, None if channels is None else list(channels), level)[0]


def _resolve(model, image):
    """The UNet and the slide array behind a :class:`ModelFile` and a :class:`SlideFile` or path (or the objects)."""
    image = SlideFile(image) if isinstance(image, str) else image
    return (model.load() if isinstance(model, ModelFile) else model), (image.load() if isinstance(image, SlideFile)
                                                                        else image)


def _run_batch(model, image, work, p, origins, amp):
    """One task: predict chunks ``origins`` of plane ``p``, write them, mark them done; returns their count."""
    model, image = _resolve(model, image)  # a worker process loads the model / opens the slide once
    store = zarr.open_group(Path(work) / STORE, mode="r+")
    meta = store.attrs["tileunet"]
    key = meta["key"]
    t = TilePlan(**key["tiling"])
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
    model : tileunet.model.UNet or ModelFile
        A model object is shared by the local threads; a :class:`ModelFile`
        is loaded once per worker process (needed with a ``dask.distributed``
        scheduler).
    image : array-like, SlideFile or str
        The slide, or its path (and channels) opened with :func:`tileunet.io.open_image`
        on each worker.
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
    image : array-like, shape (Y, X) or (N, Y, X); (C, Y, X) or (N, C, Y, X) for a model of C > 1 channels
        Raw slide, read lazily window by window (zarr, tifffile's zarr store, numpy,
        :func:`tileunet.io.open_image`).
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
        ``dask.distributed`` scheduler; ``model`` must then be a :class:`ModelFile`
        and ``image`` a path.
    source : str
        Identity of the slide for resuming (path, size, mtime).

    Returns
    -------
    int
        Number of instances.
    """
    model_obj, image_obj = _resolve(model, image)
    prepare(model_obj, image_obj, work, tile, probability_dtype, pyramid_levels, leading_axis, source, tta)
    predict_rows(model, image, work, None, batch_size, amp, workers, scheduler_address, progress)
    n_inst = finalise(work, pp, halo, workers, progress)
    publish(work, output)
    return n_inst
