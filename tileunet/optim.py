"""What updates the weights: the optimiser, its learning-rate schedule, and the moving average of the weights.

The paper trains with SGD at momentum 0.99 on single large tiles (section 3);
Adam, schedules and the average are options.
"""

import torch


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


class _EmaDecay:
    """The moving average's decay at the current step: ``min(decay, (1 + t) / (10 + t))``.

    The warm-up (as TensorFlow's ``ExponentialMovingAverage`` with
    ``num_updates``) keeps a short run from averaging in its untrained
    start.  The step is set from the host, so updates need no device sync.
    """

    def __init__(self, decay):
        self.decay, self.step = float(decay), 0

    def __call__(self, averaged, current, num_averaged):
        weight = 1.0 - min(self.decay, (1 + self.step) / (10 + self.step))
        for a, c in zip(averaged, current):
            a.lerp_(c, weight)


def make_ema(model, decay):
    """Exponential moving average of the weights (and buffers), or None for ``decay`` 0.

    Not in the paper.  Averaging the last few hundred steps of a small data
    set's noisy trajectory makes the delivered network, and its validation
    score, far less dependent on the step where training happens to stop
    (Polyak & Juditsky 1992; the weight EMA of timm and nnU-Net's successors).
    Returns a :class:`torch.optim.swa_utils.AveragedModel` whose ``avg`` is
    the :class:`_EmaDecay` to step.
    """
    if not 0 <= decay < 1:
        raise ValueError(f"train.ema must be in [0, 1), got {decay}")
    if decay == 0:
        return None
    from torch.optim.swa_utils import AveragedModel
    schedule = _EmaDecay(decay)
    ema = AveragedModel(model, multi_avg_fn=schedule, use_buffers=True)
    ema.schedule = schedule
    ema.module.eval()  # never trained itself: drop-out off whenever it is used
    return ema
