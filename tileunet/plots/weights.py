"""Preview of a weight map for the report: image | labels | weight map (with colour bar).

Drawn with matplotlib's Agg canvas, no pyplot state.
"""

import numpy as np
from matplotlib.figure import Figure

from ..io import atomic_path
from . import box_note, cell_box, display_rgb


def label_colours(labels, seed=0):
    """RGBA image of instance labels: background transparent-black, each id a random bright colour.

    Parameters
    ----------
    labels : ndarray of int, shape (Y, X)

    Returns
    -------
    ndarray of float, shape (Y, X, 4)
    """
    labels = np.asarray(labels)
    ids, inverse = np.unique(labels, return_inverse=True)
    rng = np.random.default_rng(seed)
    palette = np.concatenate([rng.uniform(0.3, 1.0, (len(ids), 3)), np.ones((len(ids), 1))], axis=1)
    palette[ids == 0] = (0.0, 0.0, 0.0, 1.0)
    return palette[inverse.reshape(labels.shape)]


def weight_figure(image, labels, weights, title="", margin=32):
    """Three panels side by side: the image, its instance labels, the weight map with a colour bar.

    The panels show the cells' bounding box grown by ``margin`` px
    (:func:`tileunet.plots.cell_box`), so the border term between touching
    cells is visible even where cells cover a small part of the frame.

    Parameters
    ----------
    image : ndarray of float, shape (Y, X)
        Normalised intensities ((C, Y, X) with channels), shown by :func:`tileunet.plots.display_rgb`.
    labels : ndarray of int, shape (Y, X)
        Instance ids, 0 = background.
    weights : ndarray of float, shape (Y, X)
        The weight map (:func:`tileunet.weights.weight_map`).
    title : str
        Figure title.
    margin : int
        Context (px) kept around the cells.

    Returns
    -------
    matplotlib.figure.Figure
    """
    image, labels, weights = (np.asarray(a) for a in (image, labels, weights))
    if not image.shape[-2:] == labels.shape == weights.shape or image.ndim not in (2, 3) or labels.ndim != 2:
        raise ValueError(f"image {image.shape}, labels {labels.shape} and weights {weights.shape} "
                         "must be 2D arrays of one shape; pass one plane")
    box = cell_box(labels, margin)
    note = box_note(box, labels.shape)
    title = f"{title}  {note}".strip() if note else title
    image, labels, weights = image[(Ellipsis, *box)], labels[box], weights[box]
    height, width = labels.shape
    panel = 4.0
    fig = Figure(figsize=(3 * panel + 1.0, panel * height / width + 0.8), layout="constrained")
    axes = fig.subplots(1, 3)
    axes[0].imshow(display_rgb(image), interpolation="nearest")
    axes[0].set_title("image")
    axes[1].imshow(label_colours(labels), interpolation="nearest")
    axes[1].set_title(f"labels ({len(np.unique(labels[labels > 0]))} cells)")
    shown = axes[2].imshow(weights, cmap="magma", interpolation="nearest")
    axes[2].set_title(f"weight map (max {float(weights.max()) if weights.size else 0:.2f})")
    fig.colorbar(shown, ax=axes[2], shrink=0.8, label="w(x)")
    for ax in axes:
        ax.set_axis_off()
    if title:
        fig.suptitle(title)
    return fig


def save_weight_preview(path, image, labels, weights, title="", dpi=100):
    """Write :func:`weight_figure` as a PNG at ``path``, atomically."""
    fig = weight_figure(image, labels, weights, title)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
