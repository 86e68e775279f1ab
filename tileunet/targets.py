"""Training targets from instance labels: the paper's two classes, or background / interior / border.

``foreground``: class 1 where labels > 0 (the paper's cell / background).
``border``: class 1 for a cell's interior and class 2 for its border, the
pixels within ``border_width`` px of another cell or of background.  Not in
the paper: the explicit border class is the common remedy for merged
touching cells in nucleus segmentation (e.g. Caicedo et al. 2019, "Evaluation
of deep learning strategies for nucleus segmentation"); its interior
probability is a seed map in which touching cells are apart by construction
(:mod:`tileunet.watershed`).  The paper's weight map still applies on top.

Class maps of a border-class model: soft-max (background, interior, border);
the foreground probability is interior + border.
"""

import numpy as np
from scipy import ndimage
from skimage.morphology import disk

TARGETS = ("foreground", "border")


def n_classes(target):
    """Network outputs for ``target``: 2 (foreground) or 3 (border)."""
    if target not in TARGETS:
        raise ValueError(f"train.target must be one of {TARGETS}, got {target!r}")
    return 2 if target == "foreground" else 3


def context(target, border_width):
    """Pixels of labels needed around a window to compute its classes (the border's reach)."""
    return int(border_width) if n_classes(target) == 3 else 0


def border_classes(labels, border_width):
    """Background 0, interior 1, border 2 of an instance-label image.

    Parameters
    ----------
    labels : numpy.ndarray of int, shape (H, W)
        Instance ids, 0 = background.
    border_width : int
        A cell pixel is border if another label (a cell or background) lies
        within a disc of this radius (px); >= 1.

    Returns
    -------
    numpy.ndarray of int64, shape (H, W)

    Examples
    --------
    >>> border_classes(np.array([[0, 1, 1, 1, 1, 1, 2, 2, 2]]), 1).tolist()
    [[0, 2, 1, 1, 1, 2, 2, 1, 1]]
    """
    if border_width < 1:
        raise ValueError(f"train.border_width must be at least 1 px, got {border_width}")
    labels = np.asarray(labels)
    foot = disk(int(border_width))
    # "nearest" extends the edge: the array's edge is no border (windows are mirrored there anyway)
    other = (ndimage.maximum_filter(labels, footprint=foot, mode="nearest") != labels) | (
        ndimage.minimum_filter(labels, footprint=foot, mode="nearest") != labels)
    out = (labels > 0).astype(np.int64)
    out[(labels > 0) & other] = 2
    return out


def classes(labels, target, border_width=2):
    """The class of every pixel of a labels window, cropped by :func:`context` on each side.

    Parameters
    ----------
    labels : numpy.ndarray of int, shape (h + 2 c, w + 2 c)
        c = ``context(target, border_width)``.
    target : {"foreground", "border"}
    border_width : int

    Returns
    -------
    numpy.ndarray of int64, shape (h, w)
    """
    c = context(target, border_width)
    if c == 0:
        return (np.asarray(labels) > 0).astype(np.int64)
    return border_classes(labels, border_width)[c:-c, c:-c]


def touching(labels, gap=1):
    """Whether two cells of an instance-label image lie at most ``gap`` px apart.

    Cells that touch in the annotation are ``gap`` = 1 px apart once
    :func:`tileunet.labels.separate_touching` has carved them, 0 before.

    Parameters
    ----------
    labels : numpy.ndarray of int, shape (Y, X)
        Instance ids, 0 = background.
    gap : int
        Largest background gap (px) between two cells that counts as touching.

    Returns
    -------
    bool

    Examples
    --------
    >>> touching(np.array([[1, 1, 0, 2]])), touching(np.array([[1, 0, 0, 2]]))
    (True, False)
    """
    labels = np.asarray(labels)
    cells = labels > 0
    if not cells.any():
        return False
    foot = disk(int(gap) + 1)
    larger = ndimage.maximum_filter(labels, footprint=foot, mode="nearest") > labels
    # background counts as the largest id, so that only cells can be the smaller neighbour
    smaller = ndimage.minimum_filter(np.where(cells, labels, labels.max() + 1), footprint=foot, mode="nearest") < labels
    return bool(np.any(cells & (larger | smaller)))


def interior_fraction(label_planes, border_width):
    """Fraction of cell pixels that the border target makes interior, over label planes.

    Parameters
    ----------
    label_planes : iterable of numpy.ndarray of int, each (Y, X)
    border_width : int

    Returns
    -------
    float
        0 when every cell is narrower than ``2 * border_width + 1`` px (or there are no cells):
        the interior class, the watershed's seeds, would never be seen.

    Examples
    --------
    >>> labels = np.zeros((9, 9), np.int32); labels[1:8, 1:8] = 1
    >>> round(interior_fraction([labels], 2), 3)  # a 3 x 3 interior in a 7 x 7 cell
    0.184
    """
    interior = cells = 0
    for labels in label_planes:
        classes_ = border_classes(labels, border_width)
        interior += int((classes_ == 1).sum())
        cells += int((classes_ > 0).sum())
    return interior / cells if cells else 0.0
