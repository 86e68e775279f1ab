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

import csv
import dataclasses
import html

import numpy as np
from scipy import sparse
from scipy.optimize import linear_sum_assignment
from scipy.sparse.csgraph import connected_components
from skimage.metrics import adapted_rand_error, contingency_table

from .errors import InputError
from .io import atomic_path

#: Keys of :func:`evaluate_pair` that :func:`summarize` sums over images.
COUNT_KEYS = ("n_true", "n_pred", "tp", "fp", "fn", "merges", "splits")
#: Keys of :func:`evaluate_pair` that :func:`summarize` averages over images.
RATE_KEYS = ("pixel_error", "iou", "dice", "rand_error", "rand_precision", "rand_recall", "precision",
             "recall", "f1", "mean_matched_iou", "panoptic_quality", "cross_entropy")


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


# ---------------------------------------------------------------- pixel level
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


# -------------------------------------------------------------- segment level
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


# ------------------------------------------------------------- instance level
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


# ------------------------------------------------------------------ combined
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


def _format(value):
    return format(value, ".6g") if isinstance(value, float) else str(value)


def write_tsv(rows, path):
    """Write rows of metrics as a TSV, atomically.

    Parameters
    ----------
    rows : list of dict
        Columns are the union of the keys in order of first appearance; a
        missing value is left empty.  Floats keep 6 significant digits.
    path : str or Path
    """
    columns = list(dict.fromkeys(k for r in rows for k in r))
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh, delimiter="\t", lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([[_format(r[c]) if c in r else "" for c in columns] for r in rows])


_HTML = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: sans-serif; font-size: 13px; margin: 1em; }}
table {{ border-collapse: collapse; }}
th, td {{ padding: 3px 8px; border-bottom: 1px solid #ddd; text-align: right; }}
th {{ background: #f3f4f6; position: sticky; top: 0; }}
td:first-child, th:first-child {{ text-align: left; }}
tr.summary td {{ font-weight: bold; border-top: 2px solid #999; }}
</style></head><body>
<h3>{title}</h3>
<table>
<tr>{head}</tr>
{body}
</table></body></html>
"""


def write_html(rows, path, title="", digits=3):
    """Write rows of metrics as a standalone HTML table, atomically (the report shows it inline).

    Parameters
    ----------
    rows : list of dict
        As for :func:`write_tsv`; a row whose first value is ``summary`` is
        set in bold.
    path : str or Path
    title : str
        Page title and heading.
    digits : int
        Decimals shown for floats (the TSV keeps 6 significant digits).
    """
    columns = list(dict.fromkeys(k for r in rows for k in r))

    def cell(value):
        return format(value, f".{digits}f") if isinstance(value, float) else str(value)

    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "\n".join(
        f'<tr{" class=summary" if r and str(next(iter(r.values()))) == "summary" else ""}>'
        + "".join(f"<td>{html.escape(cell(r[c])) if c in r else ''}</td>" for c in columns) + "</tr>"
        for r in rows)
    with atomic_path(path) as tmp:
        tmp.write_text(_HTML.format(title=html.escape(title), head=head, body=body))


def _parse(text):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def read_summary(path):
    """The ``summary`` row of a metrics TSV written by :func:`write_tsv`.

    Parameters
    ----------
    path : str or Path
        A ``metrics.tsv`` of the evaluate stage.

    Returns
    -------
    dict
        Column -> value (int, float, or str); empty cells are left out.
    """
    with open(path, newline="") as fh:
        rows = [r for r in csv.DictReader(fh, delimiter="\t") if r.get("sample") == "summary"]
    if len(rows) != 1:
        raise InputError(path, f"has {len(rows)} rows with sample=summary, expected 1",
                         "re-run the evaluate stage to rewrite the table")
    return {k: _parse(v) for k, v in rows[0].items() if k != "sample" and v not in ("", None)}
