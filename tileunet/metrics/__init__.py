"""Segmentation metrics for one 2D image, and their summary over a test set.

Pixel level: pixel error, foreground IoU and Dice.  Segment level: the
adapted Rand error of the ISBI 2012 / SNEMI3D challenges.  Instance level: a
one-to-one matching of predicted to true instances at IoU >= a threshold
(precision, recall, F1, mean matched IoU, panoptic quality) and counts of
merged and split cells, the errors the paper's border weights are meant to
prevent (Ronneberger et al. 2015, section 3: "separation borders between
touching cells").

Label images are integer instance ids with 0 = background; ids need not be
consecutive.  Every function takes one 2D image; :func:`evaluate_stack`
applies :func:`evaluate_pair` plane by plane.
"""


import numpy as np

from ._checks import _check_pair
from .matching import (Matching, _check_fraction, _match, _merged, _overlaps, _split, match_instances,
                       merged_instances, split_instances)
from .pixel import foreground_cross_entropy, foreground_dice, foreground_iou, pixel_error
from .rand import adapted_rand
from ..tables import read_summary, write_html, write_tsv

__all__ = ["COUNT_KEYS", "RATE_KEYS", "Matching", "adapted_rand", "evaluate_pair", "evaluate_stack",
           "foreground_cross_entropy", "foreground_dice", "foreground_iou", "match_instances", "merged_instances",
           "pixel_error", "read_summary", "split_instances", "summarize", "write_html", "write_tsv"]

#: Keys of :func:`evaluate_pair` that :func:`summarize` sums over images.
COUNT_KEYS = ("n_true", "n_pred", "tp", "fp", "fn", "merges", "splits")
#: Keys of :func:`evaluate_pair` that :func:`summarize` averages over images.
RATE_KEYS = ("pixel_error", "iou", "dice", "rand_error", "rand_precision", "rand_recall", "precision",
             "recall", "f1", "mean_matched_iou", "panoptic_quality", "cross_entropy")


def evaluate_pair(pred_labels, true_labels, iou_threshold=0.5, pred_prob=None, fraction=0.5):
    """Every metric of this module for one 2D image.

    Parameters
    ----------
    pred_labels, true_labels : ndarray of int, shape (Y, X)
        Predicted and true instance ids, 0 = background.
    iou_threshold : float
        IoU at which instances match (:func:`match_instances`).
    pred_prob : ndarray of float, shape (Y, X), optional
        Foreground probability; adds ``cross_entropy``.
    fraction : float
        Area fraction of the merge / split criteria.

    Returns
    -------
    dict
        ``pixel_error``, ``iou``, ``dice`` (foreground); ``rand_error``,
        ``rand_precision``, ``rand_recall`` (:func:`adapted_rand`);
        ``n_true``, ``n_pred``, ``tp``, ``fp``, ``fn``, ``precision``,
        ``recall``, ``f1``, ``mean_matched_iou``, ``panoptic_quality``
        (:class:`Matching`); ``merges``, ``splits`` (counts of
        :func:`merged_instances` and :func:`split_instances`);
        ``cross_entropy`` when ``pred_prob`` is given.  Values are Python
        floats and ints.
    """
    _check_fraction(fraction)
    pred, true = _check_pair(pred_labels, true_labels)
    ov = _overlaps(pred, true)
    m = _match(ov, iou_threshold)
    rand_error, rand_precision, rand_recall = adapted_rand(pred, true)
    row = {
        "pixel_error": pixel_error(pred, true),
        "iou": foreground_iou(pred, true),
        "dice": foreground_dice(pred, true),
        "rand_error": rand_error,
        "rand_precision": rand_precision,
        "rand_recall": rand_recall,
        "n_true": m.n_true, "n_pred": m.n_pred, "tp": m.tp, "fp": m.fp, "fn": m.fn,
        "precision": float(m.precision),
        "recall": float(m.recall),
        "f1": float(m.f1),
        "mean_matched_iou": m.mean_matched_iou,
        "panoptic_quality": m.panoptic_quality,
        "merges": len(_merged(ov, fraction)),
        "splits": len(_split(ov, fraction)),
    }
    if pred_prob is not None:
        row["cross_entropy"] = foreground_cross_entropy(pred_prob, true)
    return row


def evaluate_stack(pred_labels, true_labels, iou_threshold=0.5, pred_prob=None, fraction=0.5):
    """:func:`evaluate_pair` for a 2D image or each plane of a stack.

    Parameters
    ----------
    pred_labels, true_labels : ndarray of int, shape (Y, X) or (N, Y, X)
    iou_threshold, fraction : float
        As in :func:`evaluate_pair`.
    pred_prob : ndarray of float, same shape, optional

    Returns
    -------
    list of dict
        One row per plane, each with ``plane`` (0 for a 2D image) first.
    """
    pred, true = np.asarray(pred_labels), np.asarray(true_labels)
    if pred.shape != true.shape or pred.ndim not in (2, 3):
        raise ValueError(f"pred_labels {pred.shape} and true_labels {true.shape} must share one shape, "
                         "(Y, X) or (N, Y, X); compare a prediction with the labels of the same image")
    if pred_prob is not None and np.shape(pred_prob) != pred.shape:
        raise ValueError(f"pred_prob {np.shape(pred_prob)} and pred_labels {pred.shape} differ in shape; "
                         "pass the probability and labels of the same prediction")
    planes = pred.reshape((-1,) + pred.shape[-2:]), true.reshape((-1,) + true.shape[-2:])
    probs = [None] * len(planes[0]) if pred_prob is None else np.reshape(pred_prob, planes[0].shape)
    return [{"plane": i, **evaluate_pair(p, t, iou_threshold, prob, fraction)}
            for i, (p, t, prob) in enumerate(zip(*planes, probs))]


def summarize(rows):
    """One summary row over images: counts summed, rates averaged.

    Parameters
    ----------
    rows : list of dict
        Rows of :func:`evaluate_pair` (extra keys such as ``sample`` are
        ignored).

    Returns
    -------
    dict
        ``n_images``, then each key of ``COUNT_KEYS`` (sum) and ``RATE_KEYS``
        (mean over the images where it is defined, NaN where it is nowhere)
        present in the rows, in the rows' order.  Each image weighs the same,
        as in the paper's per-image averages.
    """
    keys = [k for k in dict.fromkeys(k for r in rows for k in r) if k in COUNT_KEYS + RATE_KEYS]
    out = {"n_images": len(rows)}
    for k in keys:
        vals = np.array([r.get(k, np.nan) for r in rows], dtype=float)
        if k in COUNT_KEYS:
            out[k] = int(np.nansum(vals))
        else:
            out[k] = float(np.mean(vals[~np.isnan(vals)])) if (~np.isnan(vals)).any() else float("nan")
    return out
