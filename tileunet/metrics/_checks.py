"""Argument checks shared by the metrics: 2D label images of one shape."""

import numpy as np


def _check_2d(labels, name):
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"{name} has shape {labels.shape}, expected one 2D (Y, X) image; "
                         "pass one plane at a time or use evaluate_stack for (N, Y, X)")
    return labels


def _check_labels(labels, name):
    labels = _check_2d(labels, name)
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{name} has dtype {labels.dtype}, expected integer instance ids; "
                         "label a mask first, e.g. skimage.measure.label(mask)")
    if labels.size and labels.min() < 0:
        raise ValueError(f"{name} has negative ids; use 0 for background and positive ids for instances")
    return labels


def _check_pair(pred, true, check=_check_labels):
    pred, true = check(pred, "pred_labels"), check(true, "true_labels")
    if pred.shape != true.shape:
        raise ValueError(f"pred_labels {pred.shape} and true_labels {true.shape} differ in shape; "
                         "compare a prediction with the labels of the same image")
    return pred, true
