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
import hashlib
import json
import logging
import math
import random
import signal
import threading
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import zarr
from tqdm.auto import tqdm

from .device import autocast, configure, flushed_denormals, select_device
from .io import atomic_path
from .model import UNet, check_input_size
from .tiles import IterationBatches, RandomTiles, TileReader, augmented_planes, sample_groups, validation_tiles

log = logging.getLogger(__name__)

CHECKPOINT = "last.pt"
METRIC_COLUMNS = ("iteration", "loss", "val_loss", "val_iou", "lr", "tiles_per_s")
ROW_EVERY = 25
"""Iterations per metrics row at most (rows also fall on validations, checkpoints and the end)."""

# Keys that change the trajectory of the weights; the others (how often to
# validate or save, where and how fast to run) may change between a run and its resume.
_RESUME_IGNORES = ("device", "val_interval", "val_tiles", "checkpoint_interval", "compile", "workers",
                   "channels_last", "iterations")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """The ``train`` section of the config (see config/schema.yaml for each key)."""

    device: str = "auto"
    iterations: int = 10000
    tile_size: int = 572
    batch_size: int = 1
    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.99
    weight_decay: float = 0.0
    schedule: str = "constant"
    step_size: int = 5000
    step_gamma: float = 0.1
    grad_clip: float = 0.0
    loss_normalization: str = "weighted_mean"
    val_interval: int = 500
    val_tiles: int = 16
    checkpoint_interval: int = 500
    amp: bool = True
    channels_last: bool = True
    compile: bool = False
    workers: int = 2
    foreground_p: float = 0.0

    @classmethod
    def from_dict(cls, values):
        """Build from a config dict; unknown keys are refused."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown train config keys {unknown}. Fix: use only {sorted(known)}")
        return cls(**values)


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or inf; the last good checkpoint is kept."""


class Interrupted(Exception):
    """Training stopped by a signal after writing a checkpoint; rerun to resume."""

    def __init__(self, signum, iteration, path):
        self.signum, self.iteration, self.path = signum, iteration, path
        super().__init__(f"stopped by signal {signal.Signals(signum).name} at iteration {iteration}; "
                         f"checkpoint written to {path}. Rerun to resume")


def weighted_cross_entropy(logits, target, weights, normalization="weighted_mean"):
    """Pixel-wise soft-max cross-entropy weighted per pixel (paper equation 1).

    Parameters
    ----------
    logits : torch.Tensor, (N, K, H, W)
        Network output; computed in float32 whatever its dtype.
    target : torch.Tensor of int, (N, H, W)
        Class per pixel, already cropped to the output window.
    weights : torch.Tensor, (N, H, W)
        The weight map w(x) over the same window (0 excludes a pixel).
    normalization : {"weighted_mean", "mean"}
        ``sum(w * ce) / sum(w)`` or ``sum(w * ce) / (N H W)``.

    Returns
    -------
    torch.Tensor, scalar float32

    Notes
    -----
    The paper states the energy as the sum ``E = -sum_x w(x) log p_l(x)(x)``;
    dividing by a constant per batch only rescales the learning rate. The
    weighted mean makes the step size independent of the tile size and of the
    border term's share of the tile.
    """
    return _reduce(_weighted_ce_map(logits, target, weights), weights, normalization)


def _weighted_ce_map(logits, target, weights):
    return F.cross_entropy(logits.float(), target, reduction="none") * weights.float()  # (N, H, W)


def _reduce(wce, weights, normalization):
    if normalization == "weighted_mean":
        return wce.sum() / weights.float().sum().clamp_min(torch.finfo(torch.float32).tiny)
    if normalization == "mean":
        return wce.mean()
    raise ValueError(f"loss normalization must be 'weighted_mean' or 'mean', got {normalization!r}")


def make_optimizer(model, cfg):
    """SGD with momentum (paper section 3) or Adam, over all parameters."""
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    raise ValueError(f"optimizer must be 'sgd' or 'adam', got {cfg.optimizer!r}")


def _constant(step):
    return 1.0


def make_scheduler(optimizer, cfg):
    """Per-iteration learning-rate schedule: constant (paper), cosine to 0 over ``iterations``, or step decay."""
    if cfg.schedule == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, _constant)
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.iterations)
    if cfg.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=cfg.step_size, gamma=cfg.step_gamma)
    raise ValueError(f"schedule must be constant, cosine or step, got {cfg.schedule!r}")


@torch.no_grad()
def evaluate(model, val, batch_size, device, amp=False, normalization="weighted_mean", channels_last=False):
    """Loss and foreground IoU over fixed validation tiles.

    Parameters
    ----------
    model : UNet
    val : tuple of torch.Tensor
        image (T, C, h, w), target (T, H, W), weights (T, H, W) as from
        :func:`tileunet.tiles.validation_tiles`; pixels of weight 0 are ignored.

    Returns
    -------
    (float, float)
        Loss normalised over all tiles as in training, and the IoU of
        predicted (argmax == 1) against true foreground.
    """
    was_training = model.training
    model.eval()
    wce_sum = w_sum = count = inter = union = 0.0
    for k in range(0, len(val[0]), batch_size):
        x, y, w = (t[k:k + batch_size].to(device) for t in val)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(device, amp):
            logits = model(x)
        wce_sum += _weighted_ce_map(logits, y, w).sum().item()
        w_sum += w.sum().item()
        count += w.numel()
        inside = w > 0
        pred, true = (logits.argmax(1) == 1) & inside, (y == 1) & inside
        inter += (pred & true).sum().item()
        union += (pred | true).sum().item()
    model.train(was_training)
    loss = wce_sum / max(w_sum, 1e-30) if normalization == "weighted_mean" else wce_sum / max(count, 1)
    return loss, (inter / union if union else 1.0)


def rng_state():
    """Every RNG state a training step may touch (torch CPU and CUDA, numpy, Python)."""
    np_state = np.random.get_state()
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
            "python": random.getstate()}


def set_rng_state(state):
    """Restore :func:`rng_state`'s output."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), *rest))
    random.setstate(_tuples(state["python"]))


def _tuples(x):
    return tuple(_tuples(v) for v in x) if isinstance(x, (list, tuple)) else x


def save_checkpoint(path, payload):
    """torch.save ``payload`` to ``path`` atomically (a kill never leaves half a file)."""
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path):
    """The checkpoint dict at ``path``, or None if there is none."""
    path = Path(path)
    if not path.exists():
        return None
    return torch.load(path, map_location="cpu", weights_only=True)


def fingerprint(model_config, cfg, seed, data):
    """What must match for a checkpoint to be resumed: model, seed, data and trajectory-changing options.

    ``iterations`` counts only for the cosine schedule (its period), so a
    constant-rate run can be extended by raising it.
    """
    train = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in _RESUME_IGNORES}
    if cfg.schedule == "cosine":
        train["iterations"] = cfg.iterations
    return {"model": dict(model_config), "train": train, "seed": int(seed), "data": str(data)}


def data_fingerprint(path):
    """Hash of the augmented set's attributes and array shapes (cheap; reads no pixels)."""
    root = zarr.open_group(path, mode="r")
    parts = [dict(root.attrs)] + [[name, {a: list(g[a].shape) for a in ("image", "labels", "weights")},
                                   dict(g.attrs)] for name, g in sample_groups(root)]
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


class _SignalFlag:
    """Turns SIGTERM/SIGINT into a flag checked between iterations (main thread only)."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.signum, self._previous = None, {}

    def _handle(self, signum, frame):
        self.signum = self.signum or signum

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc):
        for s, handler in self._previous.items():
            signal.signal(s, handler)


def _worker_init(worker_id):
    # Workers leave signals to the main process, which saves a checkpoint and then shuts them down.
    for s in _SignalFlag.SIGNALS:
        signal.signal(s, signal.SIG_IGN)


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


class _Run:
    """State of one fit() call: the model, the optimiser and the metrics rows."""

    def __init__(self, model, cfg, device, checkpoint_dir, fingerprint_):
        self.model, self.cfg, self.device = model, cfg, device
        self.path = Path(checkpoint_dir) / CHECKPOINT
        self.fingerprint = fingerprint_
        self.optimizer = make_optimizer(model, cfg)
        self.scheduler = make_scheduler(self.optimizer, cfg)
        self.iteration, self.saved, self.history = 0, None, []
        self.lr = cfg.lr  # learning rate of the latest step

    def resume(self):
        ckpt = load_checkpoint(self.path)
        if ckpt is None:
            return
        if ckpt["fingerprint"] != self.fingerprint:
            changed = sorted(k for k in self.fingerprint if ckpt["fingerprint"].get(k) != self.fingerprint[k])
            log.warning("checkpoint %s was made with a different %s; starting afresh", self.path, changed)
            return
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.iteration = self.saved = ckpt["iteration"]
        self.history = list(ckpt["history"])
        set_rng_state(ckpt["rng"])
        log.info("resumed from %s at iteration %d", self.path, self.iteration)

    def save(self):
        """Write the checkpoint, unless a step made the weights non-finite (a finite loss can hide that)."""
        if not all(torch.isfinite(p).all() for p in self.model.parameters()):
            raise NonFiniteLossError(
                f"the loss was finite but the weights are NaN or inf after iteration {self.iteration}; "
                f"training stopped and {self._kept()}. Fix: lower train.lr or set train.grad_clip (e.g. 1.0)")
        save_checkpoint(self.path, {
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "iteration": self.iteration, "rng": rng_state(),
            "history": self.history, "fingerprint": self.fingerprint})
        self.saved = self.iteration

    def step(self, forward, x, y, w):
        """One optimiser step; returns the loss as a device tensor (no host sync)."""
        cfg = self.cfg
        with autocast(self.device, cfg.amp):
            logits = forward(x)  # (N, K, H', W')
        loss = weighted_cross_entropy(logits, y, w, cfg.loss_normalization)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self.lr = self.optimizer.param_groups[0]["lr"]
        self.optimizer.step()
        self.scheduler.step()
        return loss.detach()

    def _kept(self):
        if self.saved is None:
            return "no checkpoint had been written yet"
        return f"the last good checkpoint (iteration {self.saved}) is kept in {self.path}"

    def check_losses(self, losses):
        """Mean of the pending losses; raises NonFiniteLossError naming the first bad iteration."""
        values = torch.stack(losses).float().cpu().numpy()
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            first = self.iteration - len(values) + 1 + int(bad[0])
            raise NonFiniteLossError(
                f"loss is {values[bad[0]]} at iteration {first}; training stopped and {self._kept()}. "
                "Fix: lower train.lr, "
                "set train.grad_clip (e.g. 1.0), or check the training data for NaN/inf (image and weights)")
        return float(values.mean())


def fit(model, tiles, val, cfg, checkpoint_dir, device="cpu", workers=0, fingerprint_=None, on_step=None,
        progress=True):
    """Train ``model`` in place for ``cfg.iterations`` optimiser steps, resuming from ``checkpoint_dir``.

    Parameters
    ----------
    model : UNet
        Freshly built (its initial weights are replaced when resuming).
    tiles : tileunet.tiles.RandomTiles
        Training tiles; tile ``t`` is used by iteration ``t // batch_size``.
    val : tuple of torch.Tensor or None
        Fixed validation tiles (:func:`tileunet.tiles.validation_tiles`); None skips validation.
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

    Returns
    -------
    list of dict
        Metrics rows with the keys of ``METRIC_COLUMNS`` (val_* None between validations).

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
    run = _Run(model, cfg, device, checkpoint_dir, fingerprint_ or {})
    run.resume()
    model.train()
    forward = torch.compile(model) if cfg.compile else model
    loader = torch.utils.data.DataLoader(
        tiles, batch_sampler=IterationBatches(run.iteration, cfg.iterations, cfg.batch_size), num_workers=workers,
        pin_memory=cuda, worker_init_fn=_worker_init if workers else None,
        generator=torch.Generator())  # its own generator: creating the iterator must not draw from the global RNG
    row_every = max(1, min(cfg.val_interval, cfg.checkpoint_interval, ROW_EVERY))
    losses, tick = [], time.perf_counter()
    bar = tqdm(total=cfg.iterations, initial=run.iteration, disable=not progress, desc="train", mininterval=5.0)
    with _SignalFlag() as stop, bar:
        for x, y, w in loader:
            run.iteration += 1
            x = x.to(device, non_blocking=True)
            x = x.contiguous(memory_format=torch.channels_last) if channels_last else x
            y, w = y.to(device, non_blocking=True), w.to(device, non_blocking=True)
            try:
                losses.append(run.step(forward, x, y, w))
            except RuntimeError as exc:
                if _is_out_of_memory(exc):
                    raise RuntimeError(_memory_advice(model, cfg, device)) from exc
                raise
            if on_step is not None:
                on_step(run.iteration, model)
            bar.update()
            it = run.iteration
            validate = val is not None and (it % cfg.val_interval == 0 or it == cfg.iterations)
            save = it % cfg.checkpoint_interval == 0 or it == cfg.iterations or stop.signum
            if not (validate or save or it % row_every == 0):
                continue
            row = {"iteration": it, "loss": run.check_losses(losses), "val_loss": None, "val_iou": None,
                   "lr": run.lr,
                   "tiles_per_s": len(losses) * cfg.batch_size / (time.perf_counter() - tick)}
            if validate:
                row["val_loss"], row["val_iou"] = evaluate(model, val, cfg.batch_size, device, cfg.amp,
                                                           cfg.loss_normalization, channels_last)
                bar.set_postfix(loss=f"{row['loss']:.4g}", val_iou=f"{row['val_iou']:.3f}", refresh=False)
            run.history.append(row)
            if save:
                run.save()
            if stop.signum:
                raise Interrupted(stop.signum, it, run.path)
            losses, tick = [], time.perf_counter()
    if run.saved != run.iteration:  # resumed at or past the end: make the final state durable too
        run.save()
    return run.history


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
        The trained model (on its device) and the metrics rows.
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
    model = UNet(**model_config)
    if model.config.n_classes != 2 or model.config.in_channels != 1:
        raise ValueError("training targets are background/foreground (labels > 0) of single-channel images. "
                         "Fix: set model.n_classes: 2 and model.in_channels: 1")
    try:
        out = check_input_size(cfg.tile_size, model.config.depth, model.config.padding)
    except ValueError as exc:
        raise ValueError(f"train.tile_size: {exc}. Fix: set train.tile_size to one of them") from exc
    reader = TileReader(augmented_planes(augmented), out, model.margin)
    val = validation_tiles(val_stores, out, model.margin, cfg.val_tiles)
    if val is None:
        log.warning("no validation samples: val_loss and val_iou stay empty")
    workers = cfg.workers if threads is None else min(cfg.workers, max(int(threads) - 1, 0))
    if threads is not None and device.type == "cpu":
        torch.set_num_threads(max(1, int(threads) - workers))
    fp = fingerprint(dataclasses.asdict(model.config), cfg, seed, data_fingerprint(augmented))
    log.info("training a depth-%d U-Net (%d -> %d px tiles, margin %d) on %s for %d iterations, %d workers",
             model.config.depth, cfg.tile_size, out, model.margin, device, cfg.iterations, workers)
    history = fit(model, RandomTiles(reader, seed, cfg.foreground_p), val, cfg, checkpoint_dir, device, workers, fp,
                  on_step=on_step, progress=progress)
    return model, history


def write_metrics(path, history):
    """Write the metrics rows as TSV (``METRIC_COLUMNS``; empty cells where there was no validation)."""
    def cell(v):
        return "" if v is None or (isinstance(v, float) and math.isnan(v)) else (
            str(v) if isinstance(v, int) else f"{v:.6g}")
    with atomic_path(path) as tmp:
        with open(tmp, "w") as fh:
            fh.write("\t".join(METRIC_COLUMNS) + "\n")
            for row in history:
                fh.write("\t".join(cell(row[c]) for c in METRIC_COLUMNS) + "\n")
