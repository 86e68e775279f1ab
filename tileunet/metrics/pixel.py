"""Pixel-level metrics of one 2D image: pixel error, foreground IoU, Dice and cross-entropy."""

import numpy as np

from ._checks import _check_2d, _check_pair


def _foreground(pred, true):
    pred, true = _check_pair(pred, true, check=_check_2d)
    return pred != 0, true != 0


def pixel_error(pred_labels, true_labels):
    """Fraction of pixels whose foreground/background class is wrong.

    The ISBI 2012 pixel error (squared Euclidean distance between the binary
    maps over the number of pixels), with foreground = label != 0.

    Parameters
    ----------
    pred_labels, true_labels : ndarray, shape (Y, X)
        Instance labels or masks; nonzero is foreground.

    Returns
    -------
    float
        In [0, 1]; 0 is perfect.

    Examples
    --------
    >>> pixel_error(np.array([[1, 1, 0, 0]]), np.array([[1, 0, 0, 0]]))
    0.25
    """
    pred, true = _foreground(pred_labels, true_labels)
    return float(np.mean(pred != true)) if pred.size else 0.0


def foreground_iou(pred_labels, true_labels):
    """Intersection over union of the foreground masks (Jaccard index).

    The paper's PhC-U373 / DIC-HeLa figure (section 4).  Two empty masks
    agree perfectly and give 1.

    Parameters
    ----------
    pred_labels, true_labels : ndarray, shape (Y, X)
        Instance labels or masks; nonzero is foreground.

    Returns
    -------
    float
        In [0, 1]; 1 is perfect.

    Examples
    --------
    >>> foreground_iou(np.array([[1, 1, 0, 0]]), np.array([[1, 0, 0, 0]]))
    0.5
    """
    pred, true = _foreground(pred_labels, true_labels)
    union = np.count_nonzero(pred | true)
    return float(np.count_nonzero(pred & true) / union) if union else 1.0


def foreground_dice(pred_labels, true_labels):
    """Dice coefficient (F1 of foreground pixels), 2|P&T| / (|P| + |T|).

    Parameters
    ----------
    pred_labels, true_labels : ndarray, shape (Y, X)
        Instance labels or masks; nonzero is foreground.

    Returns
    -------
    float
        In [0, 1]; 1 is perfect, and two empty masks give 1.

    Examples
    --------
    >>> round(foreground_dice(np.array([[1, 1, 0, 0]]), np.array([[1, 0, 0, 0]])), 4)
    0.6667
    """
    pred, true = _foreground(pred_labels, true_labels)
    total = np.count_nonzero(pred) + np.count_nonzero(true)
    return float(2 * np.count_nonzero(pred & true) / total) if total else 1.0


def foreground_cross_entropy(pred_prob, true_labels, eps=1e-7):
    """Mean binary cross-entropy (nats) of a foreground probability.

    The unweighted counterpart of the paper's training loss (section 3),
    threshold-free, so it separates models whose thresholded masks agree.

    Parameters
    ----------
    pred_prob : ndarray, shape (Y, X)
        Foreground probability in [0, 1].
    true_labels : ndarray, shape (Y, X)
        Nonzero is foreground.
    eps : float
        Probabilities are clipped to [eps, 1 - eps] so a confident mistake
        costs -log(eps) instead of infinity.

    Returns
    -------
    float
        >= 0; 0 is a certain, correct prediction.
    """
    prob, true = _check_pair(pred_prob, true_labels, check=_check_2d)
    p = np.clip(prob.astype(np.float64), eps, 1 - eps)
    return float(-np.mean(np.where(true != 0, np.log(p), np.log1p(-p)))) if p.size else 0.0
