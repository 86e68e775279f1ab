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


#: Line style per ensemble member (cycled): members share the training / validation colours.
MEMBER_STYLES = ("-", "--", ":", "-.")


def loss_figure(histories):
    """Figure with the training and validation loss (log scale) and the validation foreground IoU.

    Parameters
    ----------
    histories : list of list of dict
        The rows of :func:`tileunet.train.fit` (iteration, loss, val_loss,
        val_iou, ...) of each training: one, or one per ensemble member
        (drawn in its own line style, labelled ``member k``).

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig = Figure(figsize=(9, 3.6), layout="constrained")
    ax_loss, ax_iou = fig.subplots(1, 2)
    positive = True
    for k, history in enumerate(histories):
        style = MEMBER_STYLES[k % len(MEMBER_STYLES)]
        name = f"member {k}, " if len(histories) > 1 else ""
        it = _column(history, "iteration")
        val = ~np.isnan(_column(history, "val_loss"))
        ax_loss.plot(it, _column(history, "loss"), style, color=TRAIN_COLOUR,
                     label=f"{name}training (mean since last row)")
        ax_loss.plot(it[val], _column(history, "val_loss")[val], "o" + style, color=VAL_COLOUR,
                     label=f"{name}validation")
        ax_iou.plot(it[val], _column(history, "val_iou")[val], "o" + style, color=VAL_COLOUR, label=name[:-2] or None)
        positive &= bool(np.nanmin(np.r_[_column(history, "loss"), np.inf]) > 0)
    if positive:
        ax_loss.set_yscale("log")
    ax_loss.set(xlabel="iteration", ylabel="weighted cross-entropy", title="Loss")
    ax_loss.legend(frameon=False, fontsize="small")
    ax_iou.set(xlabel="iteration", ylabel="foreground IoU", title="Validation IoU", ylim=(0, 1.02))
    if len(histories) > 1:
        ax_iou.legend(frameon=False, fontsize="small")
    for ax in (ax_loss, ax_iou):
        ax.grid(alpha=0.3)
    return fig


def members_curve(histories, path):
    """Write :func:`loss_figure` of one or more trainings as a PNG at ``path`` (atomically)."""
    fig = loss_figure(histories)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    return path


def loss_curve(history, path):
    """Write :func:`loss_figure` of one training as a PNG at ``path`` (atomically)."""
    return members_curve([history], path)
