"""Overlay pictures of the evaluate stage: predicted and true cells on the image.

One PNG per test image: the normalised image in grey, the true cells
outlined just inside their border (touching cells each keep their own
line), the predicted instances outlined just outside theirs (so a perfect
prediction shows both lines side by side),
predicted instances that merge true cells tinted, and true cells that the
prediction splits tinted.  Colours are from the Okabe-Ito palette, readable
with the common colour-vision deficiencies.  Drawn with matplotlib's Agg
canvas, no pyplot state.
"""

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from skimage.segmentation import find_boundaries

from ..metrics import merged_instances, split_instances
from ..repeats import per_variant
from . import box_note, cell_box, display_rgb

TRUE_COLOUR = (0.0, 0.62, 0.45)  # bluish green
PRED_COLOUR = (0.8, 0.47, 0.65)  # reddish purple
MERGE_COLOUR = (0.84, 0.37, 0.0)  # vermillion
SPLIT_COLOUR = (0.34, 0.71, 0.91)  # sky blue
HEADER_IN = 0.9  # inches above the image for the title and legend


def _tint(rgb, mask, colour, alpha):
    rgb[mask] = (1 - alpha) * rgb[mask] + alpha * np.asarray(colour)


def overlay_rgb(image, pred_labels, true_labels, merged=(), split=(), alpha=0.45):
    """Compose the overlay as an RGB array.

    Parameters
    ----------
    image : ndarray of float, shape (Y, X), or (C, Y, X)
        Normalised intensities, shown by :func:`tileunet.plots.display_rgb`.
    pred_labels, true_labels : ndarray of int, shape (Y, X)
        Instance ids, 0 = background.
    merged : sequence of int
        Predicted ids to tint as merges (:func:`tileunet.metrics.merged_instances`).
    split : sequence of int
        True ids to tint as split (:func:`tileunet.metrics.split_instances`).
    alpha : float
        Opacity of the tints.

    Returns
    -------
    ndarray of float, shape (Y, X, 3)
        In [0, 1].
    """
    image, pred, true = np.asarray(image), np.asarray(pred_labels), np.asarray(true_labels)
    if not image.shape[-2:] == pred.shape == true.shape or image.ndim not in (2, 3) or pred.ndim != 2:
        raise ValueError(f"image {image.shape}, pred_labels {pred.shape} and true_labels {true.shape} "
                         "must be 2D arrays of one shape (the image may add a channel axis); pass one plane")
    rgb = display_rgb(image)
    _tint(rgb, np.isin(pred, np.asarray(merged)) & (pred != 0), MERGE_COLOUR, alpha)
    _tint(rgb, np.isin(true, np.asarray(split)) & (true != 0), SPLIT_COLOUR, alpha)
    rgb[find_boundaries(true, mode="inner")] = TRUE_COLOUR
    rgb[find_boundaries(pred, mode="outer")] = PRED_COLOUR
    return rgb


def overlay_figure(image, pred_labels, true_labels, merged=(), split=(), title="", max_side=2048, dpi=100,
                   margin=32):
    """The overlay with a title and a legend, at about one screen pixel per image pixel.

    Parameters
    ----------
    image, pred_labels, true_labels, merged, split
        As in :func:`overlay_rgb`.
    title : str
    margin : int
        The figure shows the box around all true and predicted cells grown by
        this many px (:func:`tileunet.plots.cell_box`); the title says which.
    max_side : int
        Images larger than this (px) are subsampled by a whole stride so the
        PNG stays small; contours are then drawn on the subsampled labels.
    dpi : int

    Returns
    -------
    matplotlib.figure.Figure
    """
    image, pred_labels, true_labels = (np.asarray(a) for a in (image, pred_labels, true_labels))
    box = cell_box((pred_labels != 0) | (true_labels != 0), margin)
    crop = box_note(box, true_labels.shape)
    image, pred_labels, true_labels = image[(Ellipsis, *box)], pred_labels[box], true_labels[box]
    step = max(1, -(-max(true_labels.shape) // max_side))
    sub = (slice(None, None, step),) * 2
    rgb = overlay_rgb(image[(Ellipsis, *sub)], pred_labels[sub], true_labels[sub], merged, split)
    h, w = rgb.shape[:2]
    width = max(w / dpi, 7.0)  # room for the title and legend on small images
    height = width * h / w
    fig = Figure(figsize=(width, height + HEADER_IN), dpi=dpi)
    ax = fig.add_axes((0, 0, 1, height / (height + HEADER_IN)))
    ax.imshow(rgb, interpolation="nearest")
    ax.set_axis_off()
    handles = [Line2D([], [], color=TRUE_COLOUR, lw=2, label="true cells"),
               Line2D([], [], color=PRED_COLOUR, lw=2, label="predicted instances"),
               Patch(color=MERGE_COLOUR, alpha=0.6, label="merge (predicted)"),
               Patch(color=SPLIT_COLOUR, alpha=0.6, label="split (true)")]
    fig.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, height / (height + HEADER_IN)),
               ncol=4, frameon=False, fontsize=9)
    notes = " ".join(filter(None, [crop, f"(every {step}th pixel)" if step > 1 else ""]))
    fig.suptitle("\n".join(filter(None, [title, notes])), fontsize=10, y=0.995, va="top")
    return fig


def overlay_title(name, row):
    """A one-line summary of an :func:`tileunet.metrics.evaluate_pair` row."""
    return (f"{name}: IoU {row['iou']:.3f}, instance F1 {row['f1']:.3f} "
            f"({row['tp']}/{row['n_true']} cells matched, {row['fp']} false), "
            f"merges {row['merges']}, splits {row['splits']}")


def save_overlay(path, image, pred_labels, true_labels, merged=(), split=(), title=""):
    """Draw :func:`overlay_figure` into a PNG at ``path``."""
    fig = overlay_figure(image, pred_labels, true_labels, merged, split, title)
    fig.savefig(path, format="png")


def pick_planes(n_planes, n):
    """Spread ``n`` overlays evenly over all planes of all samples.

    Parameters
    ----------
    n_planes : sequence of int
        Planes per sample (1 for a 2D image), in sample order.
    n : int
        Overlays wanted; all planes when there are fewer.

    Returns
    -------
    list of set of int
        For each sample, the plane indices to draw.

    Examples
    --------
    >>> pick_planes([1, 1, 4], 3)
    [{0}, set(), {0, 3}]
    """
    flat = [(s, p) for s, k in enumerate(n_planes) for p in range(k)]
    picks = [set() for _ in n_planes]
    if n > 0 and flat:
        for i in np.unique(np.linspace(0, len(flat) - 1, min(n, len(flat))).round().astype(int)):
            picks[flat[i][0]].add(flat[i][1])
    return picks


def save_overlays(folder, sample, image, pred_labels, true_labels, rows, planes):
    """Draw the chosen planes of one sample into ``folder/{name}.png``.

    Parameters
    ----------
    folder : Path
        Existing directory.
    sample : str
        Sample name; a plane of a stack is named ``{sample}_{plane:04d}``.
    image : array-like, shape (Y, X) or (N, Y, X), or with channels (C, Y, X) or (N, C, Y, X)
        Normalised image (sliced plane by plane, so a lazy zarr array works).
    pred_labels, true_labels : ndarray of int, same shape as ``image``
    rows : list of dict
        :func:`tileunet.metrics.evaluate_stack` rows of this sample.
    planes : set of int
        Planes to draw.

    Returns
    -------
    list of Path
        The PNGs written.
    """
    stack = np.ndim(true_labels) == 3
    written = []
    for row in rows:
        if row["plane"] not in planes:
            continue
        idx = ((row["plane"],) if stack else ()) + (Ellipsis,)
        pred, true = pred_labels[idx], true_labels[idx]
        name = f"{sample}_{row['plane']:04d}" if stack else sample
        path = folder / f"{name}.png"
        save_overlay(path, np.asarray(image[idx]), pred, true, merged_instances(pred, true),
                     split_instances(pred, true), overlay_title(name, row))
        written.append(path)
    return written


def comparison_figure(runs, keys=("iou", "f1", "merges", "splits")):
    """Bar charts of repeated runs: the mean per variant, its standard deviation and every seed as a dot.

    Parameters
    ----------
    runs : list of (str, int, dict)
        (variant, seed, :func:`tileunet.metrics.read_summary` row), variants in display order.
    keys : sequence of str
        Columns to draw, one panel each.

    Returns
    -------
    matplotlib.figure.Figure
    """
    rows = per_variant(runs, keys)
    names = [r["variant"] for r in rows]
    fig = Figure(figsize=(max(2.6, 0.9 * len(names)) * len(keys), 3.2), dpi=100, layout="constrained")
    palette = (PRED_COLOUR, TRUE_COLOUR, SPLIT_COLOUR, MERGE_COLOUR)
    for ax, key in zip(fig.subplots(1, len(keys), squeeze=False)[0], keys):
        means = [r[f"{key}_mean"] for r in rows]
        sds = [0.0 if np.isnan(r[f"{key}_sd"]) else r[f"{key}_sd"] for r in rows]
        bars = ax.bar(range(len(names)), means, yerr=sds, capsize=3,
                      color=[palette[i % len(palette)] for i in range(len(names))], alpha=0.8)
        ax.bar_label(bars, fmt="%.3g", fontsize=8, padding=6)
        for i, name in enumerate(names):
            values = [float(s.get(key, np.nan)) for v, _, s in runs if v == name]
            ax.plot(np.full(len(values), i) + np.linspace(-0.15, 0.15, len(values)), values, "k.", ms=4)
        ax.set_xticks(range(len(names)), names, rotation=20, fontsize=8)
        ax.set_title(f"{key} (mean ± sd, dots: seeds)", fontsize=9)
        ax.margins(y=0.15)
    return fig
