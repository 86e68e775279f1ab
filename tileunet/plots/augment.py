"""Pictures of the augment stage: a grid of augmented copies as the network sees them.

One column per example; the top row shows the augmented image in grey with
every instance outlined just inside its border (touching cells each keep
their own line), the bottom row its weight map.  Drawn with matplotlib's Agg
canvas, no pyplot state.
"""

import numpy as np
import zarr
from matplotlib.figure import Figure
from skimage.segmentation import find_boundaries

from . import cell_box, display_rgb

CONTOUR_COLOUR = (0.9, 0.62, 0.0)  # Okabe-Ito orange, readable on grey


def pick_examples(store, n):
    """``n`` (sample, index) pairs spread evenly over all copies of an augmented store.

    Parameters
    ----------
    store : zarr.Group
        ``results/augmented.zarr`` opened for reading.
    n : int

    Returns
    -------
    list of (str, int)
        In store order; all copies when there are fewer than ``n``.
    """
    flat = [(name, i) for name in sorted(store.group_keys()) for i in range(store[name]["image"].shape[0])]
    if n <= 0 or not flat:
        return []
    return [flat[i] for i in np.unique(np.linspace(0, len(flat) - 1, min(n, len(flat))).round().astype(int))]


def contour_rgb(image, labels):
    """The image (:func:`tileunet.plots.display_rgb`) with instance contours, float (Y, X, 3) in [0, 1]."""
    rgb = display_rgb(image)
    rgb[find_boundaries(np.asarray(labels), mode="inner")] = CONTOUR_COLOUR
    return rgb


def examples_figure(store, n=4, max_side=384, dpi=100, margin=32):
    """The example grid of an augmented store, each copy shown around its cells.

    Parameters
    ----------
    store : str, Path or zarr.Group
        ``results/augmented.zarr``.
    n : int
        Examples (columns), spread over all samples and copies.
    max_side : int
        Larger copies are subsampled by a whole stride (contours drawn on the
        subsampled labels) to keep the PNG small.
    dpi : int
    margin : int
        Context (px) kept around the cells' bounding box
        (:func:`tileunet.plots.cell_box`); copies without cells are shown whole.

    Returns
    -------
    matplotlib.figure.Figure
    """
    group = store if isinstance(store, zarr.Group) else zarr.open_group(store, mode="r")
    picks = pick_examples(group, n)
    if not picks:
        fig = Figure(figsize=(4, 1), dpi=dpi)
        fig.text(0.5, 0.5, "no examples (augment.preview = 0 or an empty store)", ha="center", va="center")
        return fig
    shown = []
    for sample, index in picks:
        box = cell_box(group[sample]["labels"][index], margin)
        shown.append(tuple(np.asarray(group[sample][name][(index, Ellipsis, *box)])
                           for name in ("image", "labels", "weights")))
    ny, nx = np.max([c[1].shape for c in shown], axis=0)
    panel = 2.6  # inches per example column
    fig = Figure(figsize=(panel * len(picks) + 1.0, 2 * panel * ny / nx + 0.5), dpi=dpi, layout="constrained")
    axes = fig.subplots(2, len(picks), squeeze=False)
    wmax = max(float(c[2].max()) for c in shown)
    for col, ((sample, index), (image, labels, weights)) in enumerate(zip(picks, shown)):
        g = group[sample]
        step = max(1, -(-max(labels.shape) // max_side))
        sub = (slice(None, None, step), slice(None, None, step))
        axes[0, col].imshow(contour_rgb(image[(Ellipsis, *sub)], labels[sub]), interpolation="nearest")
        im = axes[1, col].imshow(weights[sub], cmap="magma", vmin=0, vmax=wmax, interpolation="nearest")
        copies = g.attrs.get("copies", 1)
        axes[0, col].set_title(f"{sample} plane {index // copies} copy {index % copies}", fontsize=8)
        for ax in axes[:, col]:
            ax.set_axis_off()
    axes[0, 0].text(-0.05, 0.5, "image + labels", rotation=90, transform=axes[0, 0].transAxes, ha="right", va="center")
    axes[1, 0].text(-0.05, 0.5, "weights", rotation=90, transform=axes[1, 0].transAxes, ha="right", va="center")
    fig.colorbar(im, ax=axes[1, :].tolist(), shrink=0.8, label="loss weight")
    return fig


def save_examples(store, path, n=4):
    """Draw :func:`examples_figure` into a PNG at ``path``."""
    examples_figure(store, n).savefig(path, format="png")
