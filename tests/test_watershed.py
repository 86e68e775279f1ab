"""Seeded watershed: hand-made cases, and chunked labels equal to the whole plane's."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from scipy import ndimage

from synthetic import touching_cells
from tileunet import watershed

PARAMS = {"threshold": 0.5, "seed_threshold": 0.8, "seed_erosion": 1, "min_seed_size": 2}


def probability_of(labels, blur=1.0):
    """A foreground probability that dips on the borders between touching cells, as a trained net's."""
    border = (ndimage.grey_dilation(labels, size=3) != ndimage.grey_erosion(labels, size=3)) & (labels > 0)
    p = ndimage.gaussian_filter(((labels > 0) & ~border).astype(float), blur)
    return np.clip(0.15 + 0.85 * p + 0.4 * (labels > 0), 0, 1).astype(np.float32)


def chunked(prob, chunk, halo, params=PARAMS, min_size=0, workers=1):
    anchored = np.zeros(prob.shape, np.int64)
    labels = np.zeros(prob.shape, np.int32)
    n, beyond = watershed.label_chunked(prob, None, anchored, labels, chunk, halo, params, min_size, workers=workers)
    return labels, n, beyond


def whole(prob, params=PARAMS, min_size=0):
    return watershed.watershed_plane(prob, None, **params, min_size=min_size)


def test_a_bridge_between_two_cells_separates_them_where_components_merge():
    p = np.zeros((9, 15), np.float32)
    p[2:7, 1:6] = p[2:7, 9:14] = 0.95  # two 5x5 cells
    p[4, 6:9] = 0.6  # a 1-px bridge above threshold, below the seed threshold
    labels = whole(p)
    assert ndimage.label(p > 0.5)[1] == 1
    assert labels.max() == 2 and labels[4, 2] != labels[4, 12]
    assert np.array_equal(labels > 0, p > 0.5)  # the flood covers the whole mask


def test_a_cell_without_a_confident_core_is_kept_and_small_ones_go():
    p = np.zeros((10, 20), np.float32)
    p[2:8, 2:8] = 0.95
    p[2:8, 11:17] = 0.7  # foreground, never above the seed threshold: its own instance
    p[0, 19] = 0.9  # one pixel
    assert whole(p).max() == 3
    labels = whole(p, min_size=2)
    # the unmarked cell's anchor (2, 11) precedes the eroded core's (3, 3)
    assert labels.max() == 2 and labels[0, 19] == 0 and labels[4, 14] == 1 and labels[4, 4] == 2


def test_ids_follow_the_anchor_order():
    p = np.zeros((12, 12), np.float32)
    p[7:11, 1:5] = 0.95  # lower, but its core starts further left than the upper cell's
    p[1:5, 6:11] = 0.95
    labels = whole(p, {**PARAMS, "seed_erosion": 0})
    assert labels[2, 8] == 1 and labels[8, 2] == 2


def rods():
    """A rod whose core breaks into two markers (a shallow dip) beside two rods that touch in a deep valley."""
    p = np.zeros((12, 30), np.float32)
    p[2:9, 1:13] = 0.95
    p[2:9, 6:8] = 0.85  # the dip across the one rod: below the seed threshold, above the merge threshold
    p[2:9, 15:29] = 0.95
    p[2:9, 21:23] = 0.55  # the valley between the two touching rods
    return p


def test_the_merge_joins_a_cell_cut_across_a_high_boundary_and_keeps_touching_cells_apart():
    p, params = rods(), {**PARAMS, "seed_threshold": 0.9, "seed_erosion": 0}
    assert whole(p, params).max() == 4  # the flood cuts the one rod in two
    labels = whole(p, {**params, "merge_threshold": 0.8, "merge_min_boundary": 3})
    assert labels.max() == 3 and labels[5, 2] == labels[5, 11] and labels[5, 16] != labels[5, 27]
    assert whole(p, {**params, "merge_threshold": 0.5, "merge_min_boundary": 3}).max() == 2
    # the rod's halves share a boundary 7 px long: a longer minimum keeps them apart
    assert whole(p, {**params, "merge_threshold": 0.8, "merge_min_boundary": 8}).max() == 4


def test_a_joined_instance_takes_the_id_of_its_first_anchor():
    lab = np.array([[3, 3, 1, 1, 2]])
    out, anchors = watershed.join(lab, {3: 0, 1: 2, 2: 4}, np.array([[1, 3]]))
    assert out.tolist() == [[3, 3, 3, 3, 2]] and anchors == {3: 0, 2: 4}
    assert watershed.join(lab, {3: 0, 1: 2, 2: 4}, np.zeros((0, 2)))[0] is lab


def test_markers_erode_with_the_outside_as_background_and_drop_small_cores():
    core = np.ones((5, 5), np.float32)
    m = watershed.markers(core, core > 0.5, 0.8, seed_erosion=1)
    assert m[0].sum() == 0 and m[2, 2] == 1 and m.sum() == 9
    assert watershed.markers(core, core > 0.5, 0.8, seed_erosion=1, min_seed_size=10).max() == 0


def test_renumber_sums_sizes_over_chunks():
    keys, final = watershed.renumber(np.array([5, 3, 5]), np.array([1, 1, 1]), min_size=2)
    assert keys.tolist() == [3, 5] and final.tolist() == [0, 1]


@pytest.mark.parametrize("shape,chunk,merge", [((97, 131), 24, 1.0), ((61, 45), 16, 1.0), ((97, 131), 24, 0.7)])
def test_chunked_equals_whole_plane_with_cells_across_chunk_borders(shape, chunk, merge):
    _, truth = touching_cells(shape, n_cells=10, radius=7, seed=3)
    p = probability_of(truth)
    params = {**PARAMS, "merge_threshold": merge, "merge_min_boundary": 3}
    groups, n_groups = ndimage.label(p > PARAMS["threshold"])
    extent = max(max(s.stop - s.start for s in box) for box in ndimage.find_objects(groups))
    ref = whole(p, params, min_size=5)
    assert merge == 1 or ref.max() < whole(p, min_size=5).max()  # the merge joins some instances
    out, n, beyond = chunked(p, chunk, halo=extent + 1, params=params, min_size=5, workers=2)
    # the slide is cut through cells: some instance spans several chunks
    cut = [i for i in range(1, n + 1) if len({(y // chunk, x // chunk) for y, x in np.argwhere(out == i)}) > 1]
    assert cut and n_groups < n  # cells cut by chunk borders, and touching cells separated
    assert np.array_equal(out, ref) and n == ref.max() and beyond == 0


def test_chunked_stack_numbers_planes_in_order():
    _, a = touching_cells((40, 50), n_cells=4, radius=6, seed=1)
    _, b = touching_cells((40, 50), n_cells=5, radius=6, seed=2)
    p = np.stack([probability_of(a), probability_of(b)])
    out, n, _ = chunked(p, 16, halo=50)
    ref0, ref1 = whole(p[0]), whole(p[1])
    assert np.array_equal(out[0], ref0)
    assert np.array_equal(out[1], np.where(ref1 > 0, ref1 + ref0.max(), 0))
    assert n == ref0.max() + ref1.max()


def test_a_colony_larger_than_the_halo_is_reported_and_mostly_unchanged():
    _, truth = touching_cells((120, 120), n_cells=40, radius=8, seed=5)
    p = probability_of(truth)
    ref = whole(p)
    out, n, beyond = chunked(p, 30, halo=12)
    same = sum(np.array_equal(out == i, ref == j) for i, j in zip(*np.unique(
        np.stack([out[ref > 0], ref[ref > 0]]), axis=1)) if i and j)
    assert beyond > 0  # the report says the halo is too small for some cells
    assert same >= 0.9 * ref.max()


@settings(max_examples=30, deadline=None)
@given(st.integers(8, 60), st.integers(8, 60), st.integers(3, 20), st.integers(0, 2**31 - 1),
       st.integers(0, 2), st.integers(0, 4), st.sampled_from([1.0, 0.6, 0.65, 0.7]), st.integers(1, 4))
def test_chunked_equals_whole_when_the_halo_covers_every_group(h, w, chunk, seed, erosion, min_size, merge,
                                                               boundary):
    rng = np.random.default_rng(seed)
    p = ndimage.gaussian_filter(rng.random((h, w)), 1.5)
    p = ((p - p.min()) / (np.ptp(p) + 1e-9)).astype(np.float32)
    params = {"threshold": 0.55, "seed_threshold": 0.75, "seed_erosion": erosion, "min_seed_size": 2,
              "merge_threshold": merge, "merge_min_boundary": boundary}
    groups = ndimage.find_objects(ndimage.label(p > params["threshold"])[0])
    halo = max([max(s.stop - s.start for s in box) for box in groups], default=0)
    out, n, _ = chunked(p, chunk, halo, params, min_size)
    ref = whole(p, params, min_size)
    assert np.array_equal(out, ref) and n == ref.max()
