"""The adapted Rand error of the ISBI 2012 / SNEMI3D challenges, for one 2D image."""

import numpy as np
from skimage.metrics import adapted_rand_error

from ._checks import _check_pair


def _compact(labels):
    """Consecutive ids 0..K (0 stays background) and the original id of each."""
    ids = np.union1d([0], np.unique(labels))
    return ids, np.searchsorted(ids, labels)


def adapted_rand(pred_labels, true_labels):
    """ISBI 2012 / SNEMI3D adapted Rand error, precision and recall.

    Over all pairs of pixels inside the true foreground (the challenges'
    "foreground-restricted" Rand index), precision is the fraction of pairs
    grouped together by the prediction that the truth also groups together,
    recall the fraction of pairs grouped by the truth that the prediction
    also groups, and the error is 1 - F-score (Arganda-Carreras et al. 2015,
    eq. for V^Rand with alpha = 0.5).

    Parameters
    ----------
    pred_labels, true_labels : ndarray of int, shape (Y, X)

    Returns
    -------
    error, precision, recall : float
        In [0, 1]; NaN where undefined (no pair to count: precision with no
        predicted pair, recall and error with fewer than 2 true foreground
        pixels).

    Notes
    -----
    Computed with :func:`skimage.metrics.adapted_rand_error`, which counts
    ordered pairs of distinct pixels, n(n - 1), rather than the paper's
    squared probabilities (n^2 / N^2, self-pairs included); the difference
    is O(1 / cell area).  Two adaptations:

    - A predicted background pixel inside a true cell is its own singleton
      segment, as in the SNEMI3D reference script, so missed pixels are
      never "correctly grouped" with each other; skimage alone would treat
      all of them as one predicted segment.
    - skimage names its precision and recall the other way round
      (scikit-image issue #6485); they are swapped back here.  The error,
      symmetric at alpha = 0.5, is unaffected.  A test pins this upstream
      behaviour.

    References
    ----------
    .. [1] Arganda-Carreras I, Turaga SC, Berger DR, et al. (2015)
           Crowdsourcing the creation of image segmentation algorithms for
           connectomics. Front. Neuroanat. 9:142.

    Examples
    --------
    >>> true = np.array([[1, 1, 1, 1]])
    >>> [round(v, 4) for v in adapted_rand(np.array([[1, 1, 2, 2]]), true)]
    [0.5, 1.0, 0.3333]
    """
    pred, true = _check_pair(pred_labels, true_labels)
    _, pred = _compact(pred)
    _, true = _compact(true)
    missed = (true != 0) & (pred == 0)
    pred = pred.astype(np.int64)
    pred[missed] = pred.max(initial=0) + 1 + np.arange(np.count_nonzero(missed))
    with np.errstate(divide="ignore", invalid="ignore"):
        error, recall, precision = adapted_rand_error(true, pred, ignore_labels=(0,))  # swapped, see Notes
    return float(error), float(precision), float(recall)
