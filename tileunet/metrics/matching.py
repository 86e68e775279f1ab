"""Instance level: a one-to-one matching of predicted to true instances, and merged and split cells."""

import dataclasses

import numpy as np
from scipy import sparse
from scipy.optimize import linear_sum_assignment
from scipy.sparse.csgraph import connected_components
from skimage.metrics import contingency_table

from ._checks import _check_pair
from .rand import _compact


@dataclasses.dataclass(frozen=True)
class _Overlaps:
    """Overlaps of every touching (true, pred) instance pair, on compact ids."""

    true_ids: np.ndarray  # original id of compact true id k (index 0 = background)
    pred_ids: np.ndarray
    true_area: np.ndarray  # px per compact true id
    pred_area: np.ndarray
    rows: np.ndarray  # compact true id of each overlapping pair (never 0)
    cols: np.ndarray  # compact pred id of each pair (never 0)
    counts: np.ndarray  # px shared by each pair

    @property
    def iou(self):
        return self.counts / (self.true_area[self.rows] + self.pred_area[self.cols] - self.counts)


def _overlaps(pred, true):
    true_ids, t = _compact(true)
    pred_ids, p = _compact(pred)
    table = contingency_table(t, p).tocoo()  # true x pred pixel counts
    rows, cols = table.row, table.col
    inst = (rows > 0) & (cols > 0)
    return _Overlaps(true_ids, pred_ids,
                     np.bincount(t.ravel(), minlength=len(true_ids)),
                     np.bincount(p.ravel(), minlength=len(pred_ids)),
                     rows[inst], cols[inst], np.rint(table.data[inst]).astype(np.int64))


def _one_to_one(rows, cols, score):
    """Largest one-to-one set of candidate pairs; among those, the largest total score.

    Each connected component of the candidate graph is solved exactly with
    :func:`scipy.optimize.linear_sum_assignment` on the cost
    -(1 + score / (2 k)), k = the component's smaller side: one more match
    always outweighs any score gain (total score bonus < 1/2).  Components
    are a cell and its neighbours, so the dense matrices stay tiny on large
    images.

    Returns
    -------
    ndarray of bool
        Which candidate pairs are kept.
    """
    keep = np.zeros(len(rows), bool)
    if not len(rows):
        return keep
    ur, ri = np.unique(rows, return_inverse=True)
    uc, ci = np.unique(cols, return_inverse=True)
    n = len(ur) + len(uc)
    graph = sparse.coo_array((np.ones(len(ri)), (ri, len(ur) + ci)), shape=(n, n))
    _, node_comp = connected_components(graph, directed=False)
    edge_comp = node_comp[ri]
    order = np.argsort(edge_comp, kind="stable")
    for edges in np.split(order, np.flatnonzero(np.diff(edge_comp[order])) + 1):
        if len(edges) == 1:  # the usual case at IoU >= 0.5: nothing to choose
            keep[edges] = True
            continue
        r_local, r = np.unique(ri[edges], return_inverse=True)
        c_local, c = np.unique(ci[edges], return_inverse=True)
        cost = np.zeros((len(r_local), len(c_local)))
        cost[r, c] = -(1 + score[edges] / (2 * min(cost.shape)))
        sel_r, sel_c = linear_sum_assignment(cost)
        chosen = np.zeros(cost.shape, bool)
        chosen[sel_r, sel_c] = True
        keep[edges] = chosen[r, c]
    return keep


@dataclasses.dataclass(frozen=True)
class Matching:
    """A one-to-one matching of true to predicted instances.

    Attributes
    ----------
    true_ids, pred_ids : ndarray of int, shape (tp,)
        Original ids of the matched pairs.
    ious : ndarray of float, shape (tp,)
        IoU of each matched pair.
    n_true, n_pred : int
        Instances in the truth and in the prediction.
    """

    true_ids: np.ndarray
    pred_ids: np.ndarray
    ious: np.ndarray
    n_true: int
    n_pred: int

    @property
    def tp(self):
        return len(self.ious)

    @property
    def fp(self):
        return self.n_pred - self.tp

    @property
    def fn(self):
        return self.n_true - self.tp

    @property
    def precision(self):
        """tp / n_pred; 1 with nothing predicted and nothing to find, else 0 without predictions."""
        return self.tp / self.n_pred if self.n_pred else float(self.n_true == 0)

    @property
    def recall(self):
        """tp / n_true; 1 with nothing to find."""
        return self.tp / self.n_true if self.n_true else 1.0

    @property
    def f1(self):
        """2 tp / (n_true + n_pred); 1 when both are empty."""
        total = self.n_true + self.n_pred
        return 2 * self.tp / total if total else 1.0

    @property
    def mean_matched_iou(self):
        """Mean IoU of the matched pairs; NaN without a match."""
        return float(np.mean(self.ious)) if self.tp else float("nan")

    @property
    def panoptic_quality(self):
        """sum of matched IoU / (tp + fp/2 + fn/2) (Kirillov et al. 2019); 1 when both are empty."""
        total = self.tp + (self.fp + self.fn) / 2
        return float(np.sum(self.ious) / total) if total else 1.0


def _match(ov, iou_threshold):
    if not 0 < iou_threshold <= 1:
        raise ValueError(f"iou_threshold is {iou_threshold}; use a value in (0, 1], e.g. 0.5")
    iou = ov.iou
    cand = np.flatnonzero(iou >= iou_threshold)
    kept = cand[_one_to_one(ov.rows[cand], ov.cols[cand], iou[cand])]
    return Matching(ov.true_ids[ov.rows[kept]], ov.pred_ids[ov.cols[kept]], iou[kept],
                    len(ov.true_ids) - 1, len(ov.pred_ids) - 1)


def match_instances(pred_labels, true_labels, iou_threshold=0.5):
    """Match predicted to true instances one to one at IoU >= ``iou_threshold``.

    Parameters
    ----------
    pred_labels, true_labels : ndarray of int, shape (Y, X)
    iou_threshold : float
        In (0, 1].

    Returns
    -------
    Matching

    Notes
    -----
    Above 0.5 each instance has at most one candidate, so any rule gives the
    same pairs; at 0.5 exactly (a cell split into two equal halves) or below,
    candidates compete, and the matching keeps as many pairs as possible and
    among those the largest total IoU (an optimal assignment, see
    :func:`_one_to_one`).  A greedy choice by IoU can lose a match there.

    Examples
    --------
    >>> m = match_instances(np.array([[1, 1, 0, 2]]), np.array([[3, 3, 0, 0]]))
    >>> m.tp, m.fp, m.fn, m.f1
    (1, 1, 0, 0.6666666666666666)
    """
    pred, true = _check_pair(pred_labels, true_labels)
    return _match(_overlaps(pred, true), iou_threshold)


def _check_fraction(fraction):
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction is {fraction}; use a value in (0, 1], e.g. 0.5")


def _merged(ov, fraction):
    covers = ov.counts >= fraction * ov.true_area[ov.rows]
    hits = np.bincount(ov.cols[covers], minlength=len(ov.pred_ids))
    return ov.pred_ids[np.flatnonzero(hits >= 2)]


def _split(ov, fraction):
    inside = ov.counts >= fraction * ov.pred_area[ov.cols]
    hits = np.bincount(ov.rows[inside], minlength=len(ov.true_ids))
    return ov.true_ids[np.flatnonzero(hits >= 2)]


def merged_instances(pred_labels, true_labels, fraction=0.5):
    """Predicted instances that merge two or more true cells.

    A predicted instance P merges when it covers at least ``fraction`` of the
    area of each of two or more true cells T: |P & T| >= fraction * |T|.
    With fraction = 0.5 it holds the majority of each cell, so a slight
    overlap with a neighbour never counts.

    Parameters
    ----------
    pred_labels, true_labels : ndarray of int, shape (Y, X)
    fraction : float
        In (0, 1].

    Returns
    -------
    ndarray of int
        Ids of the merging predicted instances, ascending.

    Examples
    --------
    >>> merged_instances(np.array([[5, 5, 5, 5]]), np.array([[1, 1, 2, 2]]))
    array([5])
    """
    _check_fraction(fraction)
    pred, true = _check_pair(pred_labels, true_labels)
    return _merged(_overlaps(pred, true), fraction)


def split_instances(pred_labels, true_labels, fraction=0.5):
    """True cells split into two or more predicted instances.

    A true cell T is split when two or more predicted instances P each lie
    at least ``fraction`` inside it: |P & T| >= fraction * |P|.  This is the
    merge criterion with prediction and truth exchanged, so
    ``split_instances(p, t) == merged_instances(t, p)``.

    Parameters
    ----------
    pred_labels, true_labels : ndarray of int, shape (Y, X)
    fraction : float
        In (0, 1].

    Returns
    -------
    ndarray of int
        Ids of the split true cells, ascending.

    Examples
    --------
    >>> split_instances(np.array([[1, 1, 2, 2]]), np.array([[7, 7, 7, 7]]))
    array([7])
    """
    _check_fraction(fraction)
    pred, true = _check_pair(pred_labels, true_labels)
    return _split(_overlaps(pred, true), fraction)
