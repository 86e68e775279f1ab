"""Training the U-Net on the augmented Zarr set with the weighted loss (paper section 3).

The loss is the pixel-wise soft-max cross-entropy weighted by the
precomputed weight map (paper equation 1).  The optimiser defaults to the
paper's SGD with momentum 0.99 on single large tiles; Adam, schedules and
gradient clipping are options.  Training is resumable to the bit: every
``checkpoint_interval`` iterations and on SIGTERM/SIGINT the model,
optimiser, schedule, iteration (which is the whole sampler state, see
:mod:`tileunet.tiles`) and every RNG state are written atomically, and a
rerun continues from there.  On CPU with ``workers=0`` a killed-and-resumed
run ends with exactly the weights of an uninterrupted one.
"""

import dataclasses
import logging
import random
import time

import numpy as np
import torch
import zarr
from tqdm.auto import tqdm

from . import targets
from .checkpoint import data_fingerprint, fingerprint
from .config import with_defaults
from .device import configure, flushed_denormals, select_device
from .errors import InputError
from .interrupts import Interrupted, SignalFlag, worker_init
from .model import UNet, check_input_size
from .tables import write_tsv
from .tiles import (IterationBatches, RandomTiles, TileReader, augmented_planes, planes_of, validation_planes,
                    validation_tiles)
from .training_run import TrainingRun, deliver
from .validation import augmented_copies, evaluate, validate_instances

log = logging.getLogger(__name__)

METRIC_COLUMNS = ("iteration", "loss", "val_loss", "val_iou", "val_f1", "lr", "tiles_per_s")
ROW_EVERY = 25
"""Iterations per metrics row at most (rows also fall on validations, checkpoints and the end)."""

@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """The ``train`` section of the config (keys, meaning and defaults: config/schema.yaml)."""

    device: str
    iterations: int
    tile_size: int
    batch_size: int
    optimizer: str
    lr: float
    momentum: float
    weight_decay: float
    schedule: str
    step_size: int
    step_gamma: float
    grad_clip: float
    loss_normalization: str
    val_interval: int
    val_tiles: int
    checkpoint_interval: int
    amp: bool
    channels_last: bool
    compile: bool
    workers: int
    foreground_p: float
    target: str
    border_width: int
    ema: float
    ensemble: int
    select: str
    tune: dict

    @classmethod
    def from_dict(cls, values):
        """Build from a config dict, missing keys taking the schema's defaults; unknown keys are refused."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown train config keys {unknown}. Fix: use only {sorted(known)}")
        return cls(**with_defaults("train", values))


def _is_out_of_memory(exc):
    text = str(exc).lower()
    return isinstance(exc, (torch.OutOfMemoryError, MemoryError)) or any(
        s in text for s in ("out of memory", "not enough memory", "can't allocate memory"))


def _memory_advice(model, cfg, device):
    c = model.config
    return (f"out of memory on {device} training a depth-{c.depth} U-Net with {c.base_channels} base channels "
            f"on {cfg.batch_size} tile(s) of {cfg.tile_size} px. Fix: lower train.batch_size, lower "
            f"train.tile_size (keep it valid), lower model.base_channels or model.depth"
            + ("" if cfg.amp or torch.device(device).type != "cuda" else ", or set train.amp: true"))


def _validate(run, val, val_planes, tile, row, channels_last):
    """Fill the validation columns of ``row`` and let the run keep its best weights."""
    cfg, model = run.cfg, run.evaluated
    if val is not None:
        row["val_loss"], row["val_iou"] = evaluate(model, val, cfg.batch_size, run.device, cfg.amp,
                                                   cfg.loss_normalization, channels_last)
    if val_planes:
        tuned, score = validate_instances(model, val_planes, tile, cfg, cfg.batch_size)
        row["val_f1"] = score[0]
        run.consider(row["iteration"], score, tuned)


def fit(model, tiles, val, cfg, checkpoint_dir, device="cpu", workers=0, fingerprint_=None, on_step=None,
        progress=True, val_planes=None, val_copies=()):
    """Train ``model`` in place for ``cfg.iterations`` optimiser steps, resuming from ``checkpoint_dir``.

    Parameters
    ----------
    model : UNet
        Freshly built (its initial weights are replaced when resuming).
    tiles : tileunet.tiles.RandomTiles
        Training tiles; tile ``t`` is used by iteration ``t // batch_size``.
    val : tuple of torch.Tensor or None
        Fixed validation tiles (:func:`tileunet.tiles.validation_tiles`) for the loss and IoU; None skips them.
    cfg : TrainConfig
    checkpoint_dir : path
        Folder of the resumable checkpoint ``last.pt`` (created if missing).
    device : torch.device or str
    workers : int
        DataLoader worker processes; the result does not depend on it.
    fingerprint_ : dict, optional
        See :func:`fingerprint`; a checkpoint with another fingerprint is not resumed.
    on_step : callable(iteration, model), optional
        Called after every optimiser step (tests use it to interrupt).
    progress : bool
        tqdm progress bar on stderr.
    val_planes : list of (image, labels), optional
        Whole validation planes for the instance F1 (:func:`validate_instances`).
    val_copies : list of (image, labels), optional
        Their augmented copies, which break ties of the post-processing search
        (:func:`tileunet.validation.augmented_copies`).  Only the delivered
        weights' search uses them, so they are passed through the network
        once, at delivery: the checkpoint is chosen on ``val_planes`` alone.

    Returns
    -------
    (list of dict, UNet)
        Metrics rows with the keys of ``METRIC_COLUMNS`` (val_* None between
        validations), and the network to deliver (:func:`_deliver`).

    Raises
    ------
    NonFiniteLossError
        At the first NaN/inf loss, before any later checkpoint is written.
    Interrupted
        After SIGTERM/SIGINT, once the checkpoint is written.
    """
    device = torch.device(device)
    configure(device)
    cuda = device.type == "cuda"
    channels_last = cuda and cfg.channels_last
    model.to(device, memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    run = TrainingRun(model, cfg, device, checkpoint_dir, fingerprint_ or {})
    run.resume()
    model.train()
    forward = torch.compile(model) if cfg.compile else model
    loader = torch.utils.data.DataLoader(
        tiles, batch_sampler=IterationBatches(run.iteration, cfg.iterations, cfg.batch_size), num_workers=workers,
        pin_memory=cuda, worker_init_fn=worker_init if workers else None,
        generator=torch.Generator())  # its own generator: creating the iterator must not draw from the global RNG
    row_every = max(1, min(cfg.val_interval, cfg.checkpoint_interval, ROW_EVERY))
    tick = time.perf_counter()
    bar = tqdm(total=cfg.iterations, initial=run.iteration, disable=not progress, desc="train", mininterval=5.0)
    with SignalFlag() as stop, bar:
        for x, y, w in loader:
            run.iteration += 1
            x = x.to(device, non_blocking=True)
            x = x.contiguous(memory_format=torch.channels_last) if channels_last else x
            y, w = y.to(device, non_blocking=True), w.to(device, non_blocking=True)
            try:
                run.step(forward, x, y, w)
            except RuntimeError as exc:
                if _is_out_of_memory(exc):
                    raise RuntimeError(_memory_advice(model, cfg, device)) from exc
                raise
            if on_step is not None:
                on_step(run.iteration, model)
            bar.update()
            it = run.iteration
            validate = it % cfg.val_interval == 0 or it == cfg.iterations
            row_due = validate or it % cfg.checkpoint_interval == 0 or it == cfg.iterations or it % row_every == 0
            if row_due:
                n = len(run.pending)
                row = {"iteration": it, "loss": run.check_losses(), "val_loss": None, "val_iou": None,
                       "val_f1": None, "lr": run.lr, "tiles_per_s": n * cfg.batch_size / (time.perf_counter() - tick)}
                if validate:
                    _validate(run, val, val_planes, tiles.reader.out, row, channels_last)
                    bar.set_postfix(loss=f"{row['loss']:.4g}", val_f1=f"{row['val_f1'] or float('nan'):.3f}",
                                    refresh=False)
                run.history.append(row)
                tick = time.perf_counter()
            if it % cfg.checkpoint_interval == 0 or it == cfg.iterations or stop.signum:
                run.save()
            if stop.signum:
                raise Interrupted(stop.signum, it, run.path)
    if run.saved != run.iteration:  # resumed at or past the end: make the final state durable too
        run.save()
    return run.history, deliver(run, _tie_breaker(val_planes, val_copies, tiles.reader.out, cfg))


def _tie_breaker(val_planes, val_copies, tile, cfg):
    """The delivered weights' post-processing search: with the copies breaking its ties, on maps as predict makes them.

    With ``train.tune.tta`` the maps are the 8-pass average, as predict's
    with ``predict.tta``; the checkpoint was chosen on single-pass maps, 8x
    cheaper at every validation.  None when the search would repeat that
    validation's (no copies, no tta).
    """
    tta = bool(cfg.tune.get("tta"))
    if not val_planes or not (val_copies or tta):
        return None
    return lambda model: validate_instances(model, val_planes, tile, cfg, cfg.batch_size, val_copies, tta)[0]


def train(augmented, val_stores, model_config, train_config, checkpoint_dir, seed=0, threads=None, progress=True,
          on_step=None):
    """Build the U-Net and train it on ``augmented`` (resuming from ``checkpoint_dir``).

    CPU arithmetic flushes subnormal floats to zero meanwhile
    (:func:`tileunet.device.flushed_denormals`): without it, training slows
    down about 3x once the network grows confident.

    Parameters
    ----------
    augmented : path
        ``results/augmented.zarr``: one group per sample with image, labels,
        weights of shape (copies, Y, X).  Foreground (class 1) is labels > 0.
    val_stores : list of path
        ``results/data/{sample}.zarr`` groups of the validation split (may be empty).
    model_config, train_config : dict
        The config's ``model`` and ``train`` sections.
    checkpoint_dir : path
    seed : int
        Seeds the initial weights, the tile draw and drop-out.
    threads : int, optional
        Threads of the job: up to ``threads - 1`` become DataLoader workers
        and, on CPU, the rest torch's intra-op threads.  None keeps
        ``train.workers`` and torch's thread count as they are.
    progress : bool
        tqdm progress bar on stderr.
    on_step : callable(iteration, model), optional
        See :func:`fit`.

    Returns
    -------
    (UNet, list of dict)
        The delivered network (on its device, in eval mode; see
        :func:`_deliver`), with ``postprocessing`` (the post-processing
        chosen on the validation planes, or None) and ``selected_iteration``
        attributes, and the metrics rows.
    """
    with flushed_denormals():
        return _train(augmented, val_stores, model_config, train_config, checkpoint_dir, seed, threads, progress,
                      on_step)


def _train(augmented, val_stores, model_config, train_config, checkpoint_dir, seed, threads, progress, on_step):
    cfg = TrainConfig.from_dict(train_config)
    device = select_device(cfg.device)
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)
    if "n_classes" in model_config:
        raise ValueError("model.n_classes follows train.target (foreground: 2, border: 3). "
                         "Fix: remove n_classes from the model config and set train.target")
    planes = augmented_planes(augmented)
    names = data_channels(planes + [p for s in val_stores for p in planes_of(s)], augmented)
    if model_config.get("in_channels") not in (None, max(len(names), 1)):
        raise InputError(augmented, f"holds images of {max(len(names), 1)} channel(s) {list(names) or ''}, but "
                         f"model.in_channels is {model_config['in_channels']}",
                         "leave model.in_channels unset (it follows the images), or choose channels with ingest.channels")
    model = UNet(**{**model_config, "in_channels": max(len(names), 1)}, n_classes=targets.n_classes(cfg.target))
    try:
        out = check_input_size(cfg.tile_size, model.config.depth, model.config.padding)
    except ValueError as exc:
        raise ValueError(f"train.tile_size: {exc}. Fix: set train.tile_size to one of them") from exc
    reader = TileReader(planes, out, model.margin, cfg.target, cfg.border_width)
    if cfg.target == "border":
        _check_border_labels(reader, augmented, cfg.border_width)
    val = validation_tiles(val_stores, out, model.margin, cfg.val_tiles, cfg.target, cfg.border_width)
    val_planes = validation_planes(val_stores)
    val_copies = augmented_copies(val_planes, augmented, cfg.tune["copies"])
    if val is None:
        log.warning("no validation samples: val_loss, val_iou and val_f1 stay empty, the last weights are kept "
                    "and no post-processing is chosen (predict then needs it in the config)")
    workers = cfg.workers if threads is None else min(cfg.workers, max(int(threads) - 1, 0))
    if threads is not None and device.type == "cpu":
        torch.set_num_threads(max(1, int(threads) - workers))
    fp = fingerprint(dataclasses.asdict(model.config), cfg, seed, data_fingerprint(augmented, *val_stores))
    log.info("training a depth-%d U-Net (%d -> %d px tiles, margin %d, %s target) on %s for %d iterations, "
             "%d workers", model.config.depth, cfg.tile_size, out, model.margin, cfg.target, device, cfg.iterations,
             workers)
    history, delivered = fit(model, RandomTiles(reader, seed, cfg.foreground_p), val, cfg, checkpoint_dir, device,
                             workers, fp, on_step=on_step, progress=progress, val_planes=val_planes,
                             val_copies=val_copies)
    delivered.channels = list(names) or None  # stored in model.pt: predict reads the same channels
    return delivered, history


def data_channels(planes, source):
    """The channel names all training and validation planes share (empty: single-channel); refuses a mix."""
    found = {p.channels for p in planes}
    if len(found) > 1:
        by = {names: next(p.store for p in planes if p.channels == names) for names in found}
        raise InputError(source, "mixes images of different channels: " + "; ".join(
            f"{list(n) or 'one channel'} in {store}" for n, store in sorted(by.items())),
            "give every sample the same channels (ingest.channels selects them by index or name)")
    return found.pop() if found else ()


def _check_border_labels(reader, augmented, border_width):
    """Refuse a border target that leaves no interior class (cells too thin); warn when it leaves little.

    Also warn when no two training cells come within the border width: the
    border class then only outlines cells against background, and nothing
    teaches the net to part touching cells (the reason to choose it,
    :mod:`tileunet.targets`).
    """
    touch = [False]

    def planes():  # one plane in memory at a time, seen once by both checks
        for p in reader.planes:
            labels = zarr.open_group(p.store, mode="r")["labels"][() if p.index is None else p.index]
            touch[0] = touch[0] or targets.touching(labels, border_width)
            yield labels

    fraction = targets.interior_fraction(planes(), border_width)
    if fraction == 0:
        raise InputError(augmented, f"has no cell wider than {2 * border_width + 1} px, so the border target "
                         f"(train.border_width: {border_width}) leaves no interior pixels to seed the watershed",
                         "lower train.border_width, or set train.target: foreground")
    log.log(logging.WARNING if fraction < 0.1 else logging.INFO,
            "border target: %.1f%% of the cell pixels are interior (train.border_width %d)", 100 * fraction,
            border_width)
    if not touch[0]:
        log.warning("border target: no two cells of %s lie within train.border_width (%d px) of each other, so the "
                    "border class only outlines cells against background and the net never sees touching cells "
                    "parted; if your cells touch, check that the labels give each touching cell its own id, or use "
                    "train.target: foreground", augmented, border_width)


def write_metrics(path, history):
    """Write the metrics rows as TSV (``METRIC_COLUMNS``; empty cells where there was no validation)."""
    write_tsv(history, path, METRIC_COLUMNS)
