"""Training targets: the paper's two classes, and background / interior / border."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from synthetic import touching_cells
from tileunet import targets
from tileunet.tiling import read_window


def test_border_of_two_touching_cells_hand_computed():
    labels = np.zeros((7, 10), np.int32)
    labels[1:6, 1:5] = 1
    labels[1:6, 5:9] = 2
    got = targets.border_classes(labels, 1)
    expected = np.zeros((7, 10), np.int64)
    expected[1:6, 1:9] = 2
    expected[2:5, 2:4] = expected[2:5, 6:8] = 1  # interiors: one pixel in from every other label
    np.testing.assert_array_equal(got, expected)


def test_foreground_target_is_labels_above_zero_and_classes_count():
    labels = np.array([[0, 3, 3], [0, 0, 7]])
    np.testing.assert_array_equal(targets.classes(labels, "foreground"), [[0, 1, 1], [0, 0, 1]])
    assert targets.n_classes("foreground") == 2 and targets.n_classes("border") == 3
    assert targets.context("foreground", 3) == 0 and targets.context("border", 3) == 3
    with pytest.raises(ValueError, match="train.target must be one of"):
        targets.n_classes("distance")
    with pytest.raises(ValueError, match="at least 1 px"):
        targets.border_classes(labels, 0)


def test_the_image_edge_is_no_border():
    labels = np.ones((5, 5), np.int32)
    assert (targets.border_classes(labels, 2) == 1).all()


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(1, 3), st.integers(-10, 60), st.integers(-10, 80), st.integers(5, 40))
def test_a_window_with_its_context_gives_the_whole_planes_classes(seed, width, y, x, out):
    _, labels = touching_cells((64, 80), n_cells=6, radius=7, seed=seed % 1000)
    c = targets.context("border", width)
    window = read_window(labels, None, y - c, x - c, out + 2 * c, out + 2 * c)
    whole = targets.border_classes(np.pad(labels, 3 * out, mode="symmetric"), width)
    expected = whole[3 * out + y:3 * out + y + out, 3 * out + x:3 * out + x + out]
    np.testing.assert_array_equal(targets.classes(window, "border", width), expected)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**16), st.integers(0, 3))
def test_touching_means_two_cells_within_the_gap(seed, gap):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, (9, 11)) * (rng.random((9, 11)) < 0.15)
    ys, xs = np.nonzero(labels)
    ids = labels[ys, xs]
    near = (ys[:, None] - ys) ** 2 + (xs[:, None] - xs) ** 2 <= (gap + 1) ** 2
    assert targets.touching(labels, gap) == bool(np.any(near & (ids[:, None] != ids)))


def test_cells_carved_apart_still_touch_and_distant_ones_do_not():
    from tileunet.labels import separate_touching

    _, labels = touching_cells((64, 80), n_cells=6, radius=7, seed=3)
    carved = separate_touching(labels)
    assert targets.touching(labels, 0) and not targets.touching(carved, 0) and targets.touching(carved, 1)
    two = np.zeros((20, 20), np.int32)
    two[2:6, 2:6], two[2:6, 10:14] = 1, 2  # 4 px of background between them
    assert not targets.touching(two, 3) and targets.touching(two, 4)
