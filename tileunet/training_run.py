"""The state of one training run: network, moving average, optimiser, best validation, and its checkpoint.

Saving and resuming it is what makes training resumable to the bit: the
checkpoint holds every piece of this state (:mod:`tileunet.checkpoint`).
"""

import logging
from pathlib import Path

import numpy as np
import torch

from .checkpoint import read_checkpoint, rng_state, save_checkpoint, set_rng_state
from .device import autocast
from .interrupts import NonFiniteLossError
from .loss import weighted_cross_entropy
from .optim import make_ema, make_optimizer, make_scheduler
from .postprocess import warn_ties

log = logging.getLogger(__name__)

CHECKPOINT = "last.pt"


class TrainingRun:
    """State of one fit() call: the model, its moving average, the optimiser, the best validation and the rows."""

    def __init__(self, model, cfg, device, checkpoint_dir, fingerprint_):
        self.model, self.cfg, self.device = model, cfg, device
        self.path = Path(checkpoint_dir) / CHECKPOINT
        self.fingerprint = fingerprint_
        self.optimizer = make_optimizer(model, cfg)
        self.scheduler = make_scheduler(self.optimizer, cfg)
        self.ema = make_ema(model, cfg.ema)
        self.iteration, self.saved, self.history = 0, None, []
        self.best = None  # {"iteration", "score", "postprocessing", "state"} of the best validation
        self.pending = []  # losses since the last metrics row
        self.lr = cfg.lr  # learning rate of the latest step

    @property
    def evaluated(self):
        """The network validated and delivered: the moving average if there is one."""
        return self.model if self.ema is None else self.ema.module

    def resume(self):
        ckpt = read_checkpoint(self.path)
        if ckpt is None:
            return
        if ckpt["fingerprint"] != self.fingerprint:
            changed = sorted(k for k in self.fingerprint if ckpt["fingerprint"].get(k) != self.fingerprint[k])
            log.warning("checkpoint %s was made with a different %s; starting afresh", self.path, changed)
            return
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        if self.ema is not None:
            self.ema.load_state_dict(ckpt["ema"])
        self.iteration = self.saved = ckpt["iteration"]
        self.history, self.best = list(ckpt["history"]), ckpt.get("best")
        self.pending = [torch.tensor(v, device=self.device) for v in ckpt.get("pending", [])]
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
            "history": self.history, "fingerprint": self.fingerprint, "best": self.best,
            "ema": None if self.ema is None else self.ema.state_dict(),
            # the losses of a row in progress, so that a resumed run logs the row an uninterrupted one does
            "pending": [float(v) for v in self.pending]})
        self.saved = self.iteration

    def step(self, forward, x, y, w):
        """One optimiser step; queues the loss as a device tensor (no host sync)."""
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
        if self.ema is not None:
            self.ema.schedule.step = self.iteration
            self.ema.update_parameters(self.model)
        self.pending.append(loss.detach())

    def consider(self, iteration, score, postprocessing):
        """Keep the evaluated weights if their validation ``score`` (F1, IoU) is the best so far (ties: later).

        With ``select: last`` every validation replaces the kept one.
        """
        if self.best is None or self.cfg.select == "last" or tuple(score) >= tuple(self.best["score"]):
            state = {k: v.detach().cpu().clone() for k, v in self.evaluated.state_dict().items()}
            self.best = {"iteration": iteration, "score": list(score), "postprocessing": postprocessing,
                         "state": state}

    def _kept(self):
        if self.saved is None:
            return "no checkpoint had been written yet"
        return f"the last good checkpoint (iteration {self.saved}) is kept in {self.path}"

    def check_losses(self):
        """Mean of the pending losses (then cleared); raises NonFiniteLossError naming the first bad iteration."""
        values = torch.stack(self.pending).float().cpu().numpy()
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            first = self.iteration - len(values) + 1 + int(bad[0])
            raise NonFiniteLossError(
                f"loss is {values[bad[0]]} at iteration {first}; training stopped and {self._kept()}. "
                "Fix: lower train.lr, "
                "set train.grad_clip (e.g. 1.0), or check the training data for NaN/inf (image and weights)")
        self.pending = []
        return float(values.mean())


def deliver(run, retune=None):
    """The network training delivers, in eval mode, with ``postprocessing`` and ``selected_iteration`` set.

    With ``train.select: f1`` the weights of the validation with the best
    instance F1 (ties: IoU, then the later one), else those of the last
    validation; without validation planes the last weights and no
    post-processing.  With ``train.ema`` these are the moving average's.

    Parameters
    ----------
    run : TrainingRun
    retune : callable(UNet) -> dict, optional
        Searches the delivered weights' post-processing again, with its ties
        broken (:func:`tileunet.train.fit`); it replaces the one kept at their
        validation.
    """
    model = run.evaluated
    if run.best is None:
        model.postprocessing, model.selected_iteration = None, run.iteration
        return model.eval()
    model.load_state_dict(run.best["state"])
    model.postprocessing, model.selected_iteration = run.best["postprocessing"], run.best["iteration"]
    log.info("delivering the weights of iteration %d (validation F1 %.3f, IoU %.3f)", run.best["iteration"],
             *run.best["score"])
    if retune is not None:
        model.postprocessing = retune(model.eval())
    warn_ties(model.postprocessing)
    return model.eval()
