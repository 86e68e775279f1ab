"""The training curve of the train stage: loss and validation IoU against iterations.

Drawn with matplotlib's Agg canvas (no pyplot state); Okabe-Ito colours.
"""

import numpy as np
from matplotlib.figure import Figure

from ..io import atomic_path

TRAIN_COLOUR = (0.0, 0.45, 0.7)  # blue
VAL_COLOUR = (0.84, 0.37, 0.0)  # vermillion


def _column(history, key):
    return np.array([np.nan if row[key] is None else row[key] for row in history], dtype=float)


def loss_figure(history):
    """Figure with the training and validation loss (log scale) and the validation foreground IoU.

    Parameters
    ----------
    history : list of dict
        Rows of :func:`tileunet.train.fit` (iteration, loss, val_loss, val_iou, ...).

    Returns
    -------
    matplotlib.figure.Figure
    """
    it = _column(history, "iteration")
    val = ~np.isnan(_column(history, "val_loss"))
    fig = Figure(figsize=(9, 3.6), layout="constrained")
    ax_loss, ax_iou = fig.subplots(1, 2)
    ax_loss.plot(it, _column(history, "loss"), color=TRAIN_COLOUR, label="training (mean since last row)")
    ax_loss.plot(it[val], _column(history, "val_loss")[val], "o-", color=VAL_COLOUR, label="validation")
    if np.nanmin(np.r_[_column(history, "loss"), np.inf]) > 0:
        ax_loss.set_yscale("log")
    ax_loss.set(xlabel="iteration", ylabel="weighted cross-entropy", title="Loss")
    ax_loss.legend(frameon=False)
    ax_iou.plot(it[val], _column(history, "val_iou")[val], "o-", color=VAL_COLOUR)
    ax_iou.set(xlabel="iteration", ylabel="foreground IoU", title="Validation IoU", ylim=(0, 1.02))
    for ax in (ax_loss, ax_iou):
        ax.grid(alpha=0.3)
    return fig


def loss_curve(history, path):
    """Write :func:`loss_figure` as a PNG at ``path`` (atomically)."""
    fig = loss_figure(history)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    return path
