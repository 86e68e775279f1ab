"""The materialised augmented training set ``results/augmented.zarr``: copies planned, computed, written.

Every copy is drawn once (:mod:`tileunet.augment`) and written to its own
chunk, so training reads rather than computes and users can look at exactly
what the network saw.  Work is spread over processes, each running torch
single-threaded; callers of :func:`write_augmented` with ``threads > 1`` from
a script must guard it with ``if __name__ == "__main__":``, as for any
``multiprocessing`` spawn.
"""

import dataclasses
import functools
import json
import math
import multiprocessing
import sys
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
import zarr

from . import __version__
from .augment import (ARRAYS, LAYOUT, PARALLEL_MIN_PX, AugmentParams, augment_plane, copy_rng, dataset_frequencies,
                      draw_transform, torch_threads)
from .channels import CHANNELS_ATTR, spatial_shape
from .errors import InputError
from .io import atomic_path
from .weights import weight_kwargs


def _check_source(sample, path, need_weights):
    """Open and check one ``results/data/{sample}.zarr``; return its image shape and weights attributes."""
    try:
        group = zarr.open_group(path, mode="r")
    except Exception as exc:
        raise InputError(path, f"cannot be opened as a Zarr group ({exc})",
                         f"re-run ingest and weights for sample {sample}") from exc
    needed = ARRAYS if need_weights else ARRAYS[:2]
    missing = [name for name in needed if name not in group]
    if missing:
        raise InputError(path, f"has no array {', '.join(missing)}", f"re-run ingest and weights for sample {sample}")
    names = list(group["image"].attrs.get(CHANNELS_ATTR) or [])
    shapes = {name: group[name].shape for name in ARRAYS if name in group}
    shape = shapes["labels"]
    spatial = {spatial_shape(shapes["image"], len(names))} | {shapes[a] for a in shapes if a != "image"}
    if len(spatial) != 1 or len(shape) not in (2, 3) or min(shape[-2:]) < 2:
        raise InputError(path, f"has array shapes {shapes}", "image (less its channel axis), labels and weights "
                         "must share one (Y, X) or (N, Y, X) shape, Y and X >= 2")
    if group["labels"].dtype.kind not in "iu" or group["image"].dtype.kind != "f":
        raise InputError(path, f"has image {group['image'].dtype} and labels {group['labels'].dtype}",
                         "re-run ingest (image float32, labels int32)")
    attrs = dict(group["weights"].attrs) if "weights" in group else {}
    return shape, attrs, names


@functools.lru_cache(maxsize=2)
def _read_plane(path, plane, ndim, with_weights):
    """Source plane ``plane`` of a store: image, labels and (optional) weights as numpy arrays."""
    group = zarr.open_group(path, mode="r")
    index = (plane,) if ndim == 3 else ()
    return tuple(np.asarray(group[name][index]) if (name != "weights" or with_weights) else None for name in ARRAYS)


def _augment_task(task):
    """Compute one copy and write it into its own chunk of the output store; returns its transform."""
    params = AugmentParams(**task["params"])
    rng = copy_rng(task["seed"], task["sample"], task["plane"], task["copy"])
    transform = draw_transform(params, rng)
    interpolate = params.weights_mode == "interpolate"
    image, labels, weights = _read_plane(task["source"], task["plane"], task["ndim"], interpolate)
    image, labels, weights = augment_plane(image, labels, transform, weights, params.weights_mode,
                                           task["weights_kwargs"], task["separate"])
    group = zarr.open_group(Path(task["out"]) / task["sample"], mode="r+")
    for name, data in zip(ARRAYS, (image, labels, weights)):
        group[name][task["index"]] = data
    return task["sample"], task["index"], transform.to_dict()


def _init_worker():
    """Worker processes: one torch thread each (the pool itself is the parallelism)."""
    torch.set_num_threads(1)


def _jsonable(value):
    """A JSON round trip of config values (numpy scalars and arrays become lists and numbers)."""
    return json.loads(json.dumps(value, default=lambda v: v.tolist() if hasattr(v, "tolist") else str(v)))


def _create_group(root, sample, shape, attrs):
    """The output group of one sample, with empty arrays chunked one copy per chunk."""
    group = root.create_group(sample, attributes=attrs)
    names = attrs.get(CHANNELS_ATTR)
    for name, dtype in zip(ARRAYS, (np.float32, np.int32, np.float32)):
        full = shape[:1] + (len(names),) + shape[1:] if name == "image" and names else shape
        group.create_array(name, shape=full, chunks=(1,) + full[1:], dtype=dtype, fill_value=0,
                           attributes={CHANNELS_ATTR: names} if name == "image" and names else None)
    return group


def write_augmented(stores, out, cfg=None, weights_cfg=None, seed=0, threads=1, progress=False,
                    min_parallel_px=PARALLEL_MIN_PX):
    """Write the augmented training set as a Zarr v3 store, atomically.

    Parameters
    ----------
    stores : dict of str -> path
        Training sample name -> ``results/data/{sample}.zarr`` (arrays
        ``image`` float32, ``labels`` int32, ``weights`` float32 of shape
        (Y, X), or (N, Y, X) for a stack, each plane then being a source).
    out : path
        The store to write (``results/augmented.zarr``); replaced only once
        complete.
    cfg : dict or AugmentParams, optional
        The ``augment`` config section.
    weights_cfg : dict, optional
        The ``weights`` config section, for recomputed weight maps.  With
        ``frequency_scope: dataset`` the frequencies recorded in a source's
        weights attributes are used (:func:`dataset_frequencies`).
    seed : int
        The master seed.
    threads : int
        Worker processes; the result does not depend on it.
    progress : bool
        A tqdm bar on stderr.
    min_parallel_px : int
        Worker processes are started only for at least this many output
        pixels (all copies); below, starting them (each imports torch, and
        re-imports a calling script) costs more than it saves.

    Returns
    -------
    Path
        ``out``.

    Notes
    -----
    Layout: one group per sample holding ``image`` (float32), ``labels``
    (int32) and ``weights`` (float32) of shape (planes * copies, Y, X),
    plane-major (index ``plane * copies + copy``; a 2D sample has one plane),
    zstd-compressed, one copy per chunk so parallel writers never share one.
    Root and group attributes hold the seed, every parameter, the sources,
    the layout and the tileunet version; each group also lists the drawn
    :class:`Transform` of every copy (``transforms``, in index order).
    """
    params = cfg if isinstance(cfg, AugmentParams) else AugmentParams.from_config(cfg)
    weights_cfg = dict(weights_cfg or {})
    common = {"tileunet_version": __version__, "seed": int(seed), "augment": dataclasses.asdict(params),
              "weights": _jsonable(weights_cfg), "layout": LAYOUT}
    groups, tasks = plan(stores, params, weights_cfg, seed)
    out = Path(out)
    with atomic_path(out) as tmp:
        root = zarr.open_group(tmp, mode="w", zarr_format=3,
                               attributes={**common, "sources": {k: str(v) for k, v in stores.items()}})
        for sample, (shape, attrs) in groups.items():
            _create_group(root, sample, shape, {**common, **attrs})
        transforms = {sample: [None] * shape[0] for sample, (shape, _) in groups.items()}
        total_px = sum(math.prod(shape) for shape, _ in groups.values())
        workers = threads if total_px >= min_parallel_px else 1
        for sample, index, transform in _run([{**t, "out": str(tmp)} for t in tasks], workers, progress):
            transforms[sample][index] = transform
        for sample, items in transforms.items():
            root[sample].attrs["transforms"] = items
    return out


def plan(stores, params, weights_cfg, seed):
    """Check every source and list the work: one task per (sample, plane, copy).

    Returns
    -------
    groups : dict of str -> (shape, attrs)
        Output shape (planes * copies, Y, X) (the image adds its channel axis) and attributes
        of each sample's group.
    tasks : list of dict
        Picklable arguments of :func:`_augment_task`, in output order.
    """
    if not stores:
        raise InputError("augment stores", "name no training sample",
                         "mark at least one sample `train` in the sample table")
    groups, tasks = {}, []
    separate = bool(weights_cfg.get("separate_touching", False))
    for sample, source in stores.items():
        shape, wattrs, names = _check_source(sample, source, params.weights_mode == "interpolate")
        planes = shape[0] if len(shape) == 3 else 1
        frequencies = dataset_frequencies(wattrs)
        scoped = weights_cfg
        if weights_cfg.get("frequency_scope") == "dataset" and frequencies is None:
            warnings.warn(f"{source}/weights has no 'frequencies' attribute; weight maps of the copies use "
                          "per-image class frequencies. Re-run the weights stage to record the dataset's.")
            scoped = {**weights_cfg, "frequency_scope": "image"}
        groups[sample] = ((planes * params.copies,) + tuple(shape[-2:]),
                          {"source": str(source), "planes": planes, "copies": params.copies,
                           "frequencies": frequencies, **({CHANNELS_ATTR: names} if names else {})})
        common = {"sample": sample, "source": str(source), "ndim": len(shape), "seed": int(seed),
                  "params": dataclasses.asdict(params), "separate": separate,
                  "weights_kwargs": weight_kwargs(scoped, frequencies)}
        tasks += [{**common, "plane": plane, "copy": copy, "index": plane * params.copies + copy}
                  for plane in range(planes) for copy in range(params.copies)]
    return groups, tasks


def _run(tasks, threads, progress):
    """Yield :func:`_augment_task` results in task order, in-process or over spawned worker processes."""
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(tasks), desc="augmented copies", unit="copy", file=sys.stderr)
    workers = max(1, min(int(threads), len(tasks)))
    try:
        if workers == 1:
            with torch_threads(1):
                for task in tasks:
                    yield _augment_task(task)
                    if bar is not None:
                        bar.update()
        else:
            context = multiprocessing.get_context("spawn")  # fork after torch/OpenMP start can deadlock
            with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker) as pool:
                for result in pool.map(_augment_task, tasks):
                    yield result
                    if bar is not None:
                        bar.update()
    finally:
        _read_plane.cache_clear()
        if bar is not None:
            bar.close()
