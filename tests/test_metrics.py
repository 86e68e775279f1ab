"""Tests of tileunet.metrics and the evaluate overlays: hand-built cases with known answers, properties."""

import itertools
import math

import matplotlib.image
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import sparse
from scipy.sparse.csgraph import maximum_bipartite_matching
from skimage.metrics import adapted_rand_error

import tileunet.metrics as tm
from tileunet.metrics.matching import _one_to_one
import tileunet.plots.evaluate as pe
from tileunet.plots import grey
from tileunet.metrics import evaluate_pair

PROPS = settings(max_examples=40, deadline=None)
labels_2d = arrays(np.int32, st.tuples(st.integers(1, 6), st.integers(1, 7)), elements=st.integers(0, 4))


def two_cells(gap=0):
    """Two 4x4 cells side by side (ids 1, 2), separated by `gap` background columns."""
    lab = np.zeros((6, 10 + gap), np.int32)
    lab[1:5, 1:5] = 1
    lab[1:5, 5 + gap:9 + gap] = 2
    return lab


# ------------------------------------------------------------ hand-built cases
def test_identical_labels_are_perfect():
    lab = two_cells()
    row = evaluate_pair(lab, lab)
    assert row["iou"] == row["dice"] == row["f1"] == row["precision"] == row["recall"] == 1.0
    assert row["mean_matched_iou"] == row["panoptic_quality"] == 1.0
    assert row["pixel_error"] == row["rand_error"] == 0.0
    assert (row["n_true"], row["n_pred"], row["tp"], row["fp"], row["fn"]) == (2, 2, 2, 0, 0)
    assert row["merges"] == row["splits"] == 0


def test_two_touching_cells_merged_into_one_is_one_merge():
    true = two_cells()
    pred = (true > 0).astype(np.int32) * 7
    row = evaluate_pair(pred, true)
    assert row["merges"] == 1 and row["splits"] == 0
    assert row["iou"] == 1.0 and row["pixel_error"] == 0.0  # invisible to pixel metrics
    # Each half has IoU exactly 0.5 with the merged instance: >= matches one, one to one.
    assert (row["tp"], row["fp"], row["fn"]) == (1, 0, 1)
    assert evaluate_pair(pred, true, iou_threshold=0.51)["tp"] == 0
    # Rand: true pairs 2*16*15 = 480, predicted pairs 32*31 = 992, shared 480.
    assert row["rand_precision"] == pytest.approx(480 / 992) and row["rand_recall"] == 1.0
    assert row["rand_error"] == pytest.approx(1 - 480 / ((480 + 992) / 2))
    np.testing.assert_array_equal(tm.merged_instances(pred, true), [7])


def test_merge_across_a_gap_matches_nothing():
    true = two_cells(gap=1)
    pred = np.zeros_like(true)
    pred[1:5, 1:10] = 3  # both cells and the background column between them
    row = evaluate_pair(pred, true)
    assert row["merges"] == 1 and row["tp"] == 0  # IoU 16/36 with each cell
    assert row["iou"] == pytest.approx(32 / 36)


def test_one_cell_split_in_two_is_one_split():
    pred = two_cells()
    true = (pred > 0).astype(np.int32) * 4
    row = evaluate_pair(pred, true)
    assert row["splits"] == 1 and row["merges"] == 0
    assert row["rand_precision"] == 1.0 and row["rand_recall"] == pytest.approx(480 / 992)
    np.testing.assert_array_equal(tm.split_instances(pred, true), [4])


def test_a_slight_overlap_with_a_neighbour_is_no_merge():
    true = two_cells()
    pred = np.zeros_like(true)
    pred[1:5, 1:6] = 1  # all of cell 1, a quarter of cell 2
    pred[1:5, 7:9] = 2
    assert evaluate_pair(pred, true)["merges"] == 0
    pred[1:5, 1:7] = 1  # now half of cell 2 as well
    assert evaluate_pair(pred, true)["merges"] == 1


def test_pixel_iou_dice_by_hand():
    pred = np.array([[1, 1, 1, 1, 0, 0, 0, 0, 0, 0]])
    true = np.array([[0, 2, 2, 2, 2, 2, 2, 0, 0, 0]])
    assert tm.pixel_error(pred, true) == pytest.approx(4 / 10)
    assert tm.foreground_iou(pred, true) == pytest.approx(3 / 7)
    assert tm.foreground_dice(pred, true) == pytest.approx(6 / 10)
    empty = np.zeros((3, 3), int)
    assert tm.foreground_iou(empty, empty) == tm.foreground_dice(empty, empty) == 1.0


def test_mean_matched_iou_by_hand():
    true = np.array([[1, 1, 1, 1, 0, 2, 2]])
    pred = np.array([[5, 5, 5, 0, 0, 0, 0]])
    m = tm.match_instances(pred, true)
    assert (m.tp, m.fp, m.fn) == (1, 0, 1)
    np.testing.assert_array_equal(m.true_ids, [1])
    np.testing.assert_array_equal(m.pred_ids, [5])
    assert m.mean_matched_iou == pytest.approx(0.75)
    assert m.panoptic_quality == pytest.approx(0.75 / 1.5)
    assert (m.precision, m.recall, m.f1) == (1.0, 0.5, pytest.approx(2 / 3))


def test_missed_pixels_are_singletons_in_rand():
    true = np.array([[1, 1, 1, 1]])
    pred = np.array([[1, 1, 0, 0]])
    # pairs: true 4*3 = 12, predicted 2*1 = 2 (missed pixels group with nothing), shared 2.
    err, prec, rec = tm.adapted_rand(pred, true)
    assert (prec, rec) == (1.0, pytest.approx(2 / 12))
    assert err == pytest.approx(1 - 2 / 7)
    # skimage alone treats the two missed pixels as one predicted segment.
    assert adapted_rand_error(true, pred)[0] == pytest.approx(0.5)


def test_rand_ignores_true_background():
    true = np.array([[1, 1, 0, 0]])
    assert tm.adapted_rand(np.array([[1, 1, 1, 1]]), true)[0] == 0.0
    assert tm.adapted_rand(np.array([[0, 0, 0, 0]]), true)[0] == 1.0
    assert math.isnan(tm.adapted_rand(np.zeros((2, 2), int), np.zeros((2, 2), int))[0])


def test_canary_skimage_rand_precision_recall_are_swapped():
    """We swap skimage's precision and recall (scikit-image#6485); fail loudly if upstream fixes it."""
    true = np.array([[1, 1, 1, 1]])
    over_split = np.array([[1, 1, 2, 2]])
    _, sk_precision, sk_recall = adapted_rand_error(true, over_split)
    assert sk_precision == pytest.approx(1 / 3) and sk_recall == 1.0  # an over-split's precision is 1


def test_large_and_sparse_ids():
    true = np.array([[0, 2**31 - 1, 2**31 - 1, 5]], np.int32)
    pred = np.array([[10**6, 10**6, 10**6, 0]], np.int32)
    m = tm.match_instances(pred, true)
    np.testing.assert_array_equal(m.pred_ids, [10**6])
    np.testing.assert_array_equal(m.true_ids, [2**31 - 1])


def test_matching_keeps_the_most_pairs_not_the_greedy_best():
    # true A(1), B(2); pred P(1), Q(2): IoU P-A 0.45, P-B 0.40, Q-A 0.35.  Greedy on IoU takes P-A and
    # leaves Q alone; the optimum is P-B and Q-A.
    rows, cols, score = np.array([1, 2, 1]), np.array([1, 1, 2]), np.array([0.45, 0.40, 0.35])
    np.testing.assert_array_equal(_one_to_one(rows, cols, score), [False, True, True])
    # Two matches beat one even when the single pair has the larger total IoU (0.9 > 0.3 + 0.3).
    score = np.array([0.9, 0.3, 0.3])
    np.testing.assert_array_equal(_one_to_one(rows, cols, score), [False, True, True])
    # equal cardinality: the larger total IoU wins
    rows, cols, score = np.array([1, 1, 2, 2]), np.array([1, 2, 1, 2]), np.array([0.1, 0.9, 0.8, 0.1])
    np.testing.assert_array_equal(_one_to_one(rows, cols, score), [False, True, True, False])


def test_equal_halves_match_only_once():
    m = tm.match_instances(np.array([[2, 2, 3, 3]]), np.array([[1, 1, 1, 1]]))
    assert (m.tp, m.fp, m.fn) == (1, 1, 0) and m.ious.tolist() == [0.5]


def test_cross_entropy():
    true = np.array([[0, 1, 1, 0]])
    assert tm.foreground_cross_entropy(np.full((1, 4), 0.5), true) == pytest.approx(math.log(2))
    assert tm.foreground_cross_entropy(true.astype(float), true) < 1e-6
    assert evaluate_pair(true, true, pred_prob=np.full((1, 4), 0.5))["cross_entropy"] == pytest.approx(math.log(2))


@pytest.mark.parametrize("pred, true, match", [
    (np.zeros((2, 3), int), np.zeros((3, 2), int), "differ in shape"),
    (np.zeros((2, 3)), np.zeros((2, 3), int), "integer instance ids"),
    (-np.ones((2, 3), int), np.zeros((2, 3), int), "negative"),
    (np.zeros((1, 2, 3), int), np.zeros((1, 2, 3), int), "2D"),
])
def test_bad_input_says_what_to_do(pred, true, match):
    with pytest.raises(ValueError, match=match):
        evaluate_pair(pred, true)


def test_bad_parameters():
    lab = two_cells()
    with pytest.raises(ValueError, match="iou_threshold"):
        evaluate_pair(lab, lab, iou_threshold=0)
    with pytest.raises(ValueError, match="fraction"):
        tm.merged_instances(lab, lab, fraction=1.5)


# ---------------------------------------------------------- stacks and tables
def test_evaluate_stack_gives_one_row_per_plane():
    a, b = two_cells(), (two_cells() > 0).astype(np.int32)
    rows = tm.evaluate_stack(np.stack([a, b]), np.stack([a, a]), pred_prob=np.zeros((2,) + a.shape))
    assert [r["plane"] for r in rows] == [0, 1]
    assert rows[1] == {"plane": 1, **evaluate_pair(b, a, pred_prob=np.zeros(a.shape))}
    assert tm.evaluate_stack(a, a)[0] == {"plane": 0, **evaluate_pair(a, a)}
    with pytest.raises(ValueError, match="pred_prob"):
        tm.evaluate_stack(a, a, pred_prob=np.zeros((2, 2)))
    with pytest.raises(ValueError, match="share one shape"):
        tm.evaluate_stack(np.stack([a, a]), a)


def test_summarize_means_rates_and_sums_counts():
    rows = [{"sample": "a", "plane": 0, "iou": 1.0, "mean_matched_iou": float("nan"), "tp": 2, "merges": 1},
            {"sample": "b", "plane": 0, "iou": 0.5, "mean_matched_iou": 0.8, "tp": 3, "merges": 0}]
    assert tm.summarize(rows) == {"n_images": 2, "iou": 0.75, "mean_matched_iou": 0.8, "tp": 5, "merges": 1}
    out = tm.summarize([{"mean_matched_iou": float("nan")}])
    assert math.isnan(out["mean_matched_iou"])


# ------------------------------------------------------------------ properties
def brute_force_rand(pred, true):
    """Precision, recall over unordered pairs of true-foreground pixels; predicted 0 groups nothing."""
    idx = np.flatnonzero(true.ravel())
    p, t = pred.ravel(), true.ravel()
    same_t = same_p = both = 0
    for i, j in itertools.combinations(idx, 2):
        st_, sp = t[i] == t[j], p[i] == p[j] and p[i] != 0
        same_t, same_p, both = same_t + st_, same_p + sp, both + (st_ and sp)
    return (both / same_p if same_p else float("nan")), (both / same_t if same_t else float("nan"))


@PROPS
@given(pred=labels_2d, data=st.data())
def test_rand_equals_brute_force_pair_count(pred, data):
    true = data.draw(arrays(np.int32, pred.shape, elements=st.integers(0, 4)))
    err, prec, rec = tm.adapted_rand(pred, true)
    bf_prec, bf_rec = brute_force_rand(pred, true)
    np.testing.assert_allclose([prec, rec], [bf_prec, bf_rec])
    if not (math.isnan(bf_prec) or math.isnan(bf_rec)) and bf_prec + bf_rec > 0:
        assert err == pytest.approx(1 - 2 * bf_prec * bf_rec / (bf_prec + bf_rec))


def relabel(lab, seed):
    """Map ids 1..4 to distinct random ids (0 stays 0)."""
    rng = np.random.default_rng(seed)
    new = np.concatenate([[0], rng.choice(np.arange(1, 10**6), size=4, replace=False)])
    return new[lab].astype(np.int32)


@PROPS
@given(pred=labels_2d, data=st.data(), seed=st.integers(0, 2**16))
def test_metrics_do_not_depend_on_id_values(pred, data, seed):
    true = data.draw(arrays(np.int32, pred.shape, elements=st.integers(0, 4)))
    a, b = evaluate_pair(pred, true), evaluate_pair(relabel(pred, seed), relabel(true, seed + 1))
    np.testing.assert_equal(a, b)


SWAP = {"precision": "recall", "recall": "precision", "rand_precision": "rand_recall",
        "rand_recall": "rand_precision", "n_true": "n_pred", "n_pred": "n_true", "fp": "fn", "fn": "fp",
        "merges": "splits", "splits": "merges"}


@PROPS
@given(pred=labels_2d, data=st.data(), threshold=st.sampled_from([0.3, 0.5, 0.7]))
def test_exchanging_prediction_and_truth(pred, data, threshold):
    true = data.draw(arrays(np.int32, pred.shape, elements=st.integers(0, 4)))
    a, b = evaluate_pair(pred, true, threshold), evaluate_pair(true, pred, threshold)
    for key in ("pixel_error", "iou", "dice", "tp", "f1", "mean_matched_iou", "panoptic_quality", "merges"):
        np.testing.assert_allclose(a[key], b[SWAP.get(key, key)], atol=1e-12)
    # The Rand index restricts to the true foreground, so it is symmetric only without background.
    if (pred > 0).all() and (true > 0).all():
        np.testing.assert_allclose([a["rand_error"], a["rand_precision"]], [b["rand_error"], b["rand_recall"]])


@PROPS
@given(pred=labels_2d, data=st.data(), threshold=st.sampled_from([0.2, 0.5, 0.9]))
def test_bounds_and_identity(pred, data, threshold):
    true = data.draw(arrays(np.int32, pred.shape, elements=st.integers(0, 4)))
    row = evaluate_pair(pred, true, threshold)
    for key in tm.RATE_KEYS:
        assert key not in row or math.isnan(row[key]) or 0 <= row[key] <= 1, key
    assert 0 <= row["tp"] <= min(row["n_true"], row["n_pred"])
    assert row["merges"] <= row["n_pred"] and row["splits"] <= row["n_true"]
    same = evaluate_pair(true, true, threshold)
    assert same["f1"] == same["iou"] == 1.0 and same["merges"] == same["splits"] == 0
    assert same["rand_error"] == 0.0 or math.isnan(same["rand_error"])


@PROPS
@given(adj=arrays(bool, st.tuples(st.integers(1, 5), st.integers(1, 5))),
       score=st.lists(st.floats(0.01, 1.0), min_size=25, max_size=25))
def test_matching_is_one_to_one_and_maximum(adj, score):
    rows, cols = np.nonzero(adj)
    keep = _one_to_one(rows, cols, np.array(score[:len(rows)]))
    assert len(set(rows[keep])) == len(set(cols[keep])) == keep.sum()
    oracle = maximum_bipartite_matching(sparse.csr_array(adj.astype(np.int8)), perm_type="column")
    assert keep.sum() == np.count_nonzero(oracle >= 0)


# --------------------------------------------------------------------- overlays
def test_overlay_colours_contours_and_marks():
    true = two_cells()
    merged = (true > 0).astype(np.int32) * 9
    image = np.random.default_rng(0).normal(0, 3, true.shape).astype(np.float32)  # any normalisation
    g = grey(image)
    assert g.min() == 0 and g.max() == 1
    rgb = pe.overlay_rgb(image, merged, true, merged=[9], split=[])
    np.testing.assert_allclose(rgb[0, 3], pe.PRED_COLOUR)  # just outside the prediction
    np.testing.assert_allclose(rgb[1, 3], pe.TRUE_COLOUR)  # inner border of a true cell
    np.testing.assert_allclose(rgb[2, 4], pe.TRUE_COLOUR)  # touching cells keep their own line
    inside = 0.55 * g[2, 2] + 0.45 * np.array(pe.MERGE_COLOUR)
    np.testing.assert_allclose(rgb[2, 2], inside, rtol=1e-6)  # merged instance tinted
    split_rgb = pe.overlay_rgb(image, true, merged, split=[9])
    np.testing.assert_allclose(split_rgb[2, 2], 0.55 * g[2, 2] + 0.45 * np.array(pe.SPLIT_COLOUR), rtol=1e-5)
    np.testing.assert_allclose(split_rgb[5, 0], [g[5, 0]] * 3)  # untouched background stays grey
    with pytest.raises(ValueError, match="one shape"):
        pe.overlay_rgb(image[:3], merged, true)


def test_pick_planes():
    assert pe.pick_planes([1, 1, 1], 0) == [set(), set(), set()]
    assert pe.pick_planes([1, 1], 5) == [{0}, {0}]
    assert pe.pick_planes([3], 2) == [{0, 2}]
    assert pe.pick_planes([], 4) == []


def test_save_overlays_writes_the_chosen_planes(tmp_path):
    true = np.stack([two_cells(), two_cells()])
    pred = (true > 0).astype(np.int32)
    rows = tm.evaluate_stack(pred, true)
    paths = pe.save_overlays(tmp_path, "s1", np.zeros(true.shape, np.float32), pred, true, rows, {1})
    assert [p.name for p in paths] == ["s1_0001.png"] == [p.name for p in tmp_path.iterdir()]
    png = matplotlib.image.imread(paths[0])
    assert png.shape[1] == 700 and png.shape[0] > 90  # at least 7 inches wide at 100 dpi
    assert "merges 1" in pe.overlay_title("s1", rows[1])


def test_large_images_are_subsampled():
    big = np.zeros((300, 500), np.int32)
    big[100:200, 100:300] = 1
    fig = pe.overlay_figure(np.zeros(big.shape), big, big, max_side=100, margin=1000)
    assert fig.axes[0].images[0].get_array().shape[:2] == (60, 100)
    assert "every 5th pixel" in fig.get_suptitle()


def test_overlays_show_the_cells_not_the_empty_frame():
    true, pred = np.zeros((300, 500), np.int32), np.zeros((300, 500), np.int32)
    true[100:110, 200:230], pred[130:140, 260:270] = 1, 1  # the box covers predicted cells too
    fig = pe.overlay_figure(np.zeros(true.shape), pred, true, title="f", margin=5)
    assert fig.axes[0].images[0].get_array().shape[:2] == (50, 80)
    assert fig.get_suptitle() == "f\n(rows 95-145, columns 195-275)"
