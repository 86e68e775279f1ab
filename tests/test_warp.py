"""tileunet.warp: one sampling grid per copy, and the warps of image, labels and weights through it."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from synthetic import WEIGHTS_CFG
from synthetic import augment_cells as cells
from tileunet.augment import AugmentParams, Transform, augment_plane, copy_rng, draw_transform
from tileunet.warp import displacement_field, sampling_grid, warp_image, warp_labels, warp_weights
from tileunet.weights import weight_kwargs, weight_map

NOTHING = dict(elastic_p=0.0, rotate_p=0.0, flip_p=0.0, shift_p=0.0, scale_p=0.0, brightness_p=0.0, contrast_p=0.0,
               gamma_p=0.0, noise_p=0.0)


def constant_elastic(dy, dx, points=3):
    return tuple(tuple(tuple([float(v)] * points) for _ in range(points)) for v in (dy, dx))


def source_coordinates(transform, shape):
    """q(p) of the module docstring, computed directly in float64 (the reference for the grid)."""
    ny, nx = shape
    yy, xx = np.mgrid[:ny, :nx].astype(float)
    centre = np.array([(ny - 1) / 2, (nx - 1) / 2])
    a = transform.matrix()
    d = np.zeros((2, ny, nx)) if transform.elastic is None else displacement_field(transform.elastic, shape)
    return np.stack([centre[i] + a[i, 0] * (yy - centre[0]) + a[i, 1] * (xx - centre[1]) + transform.shift[i] + d[i]
                     for i in range(2)])


def grid_pixels(grid, shape):
    """grid_sample's normalised (x, y) back to pixel coordinates (y, x)."""
    g = grid.numpy()[0].astype(np.float64)
    return np.stack([(g[..., 1] + 1) * (shape[0] - 1) / 2, (g[..., 0] + 1) * (shape[1] - 1) / 2])


# --- the sampling grid -------------------------------------------------------------------------

def test_zero_displacement_and_no_other_transform_returns_the_input_exactly():
    image, labels = cells()
    for params in (AugmentParams.from_config(NOTHING), AugmentParams.from_config({**NOTHING, "elastic_p": 1.0, "elastic_std": 0.0})):
        t = draw_transform(params, copy_rng(0, "a", 0, 0))
        out_image, out_labels, out_weights = augment_plane(image, labels, t, weights_kwargs=weight_kwargs(WEIGHTS_CFG),
                                                           separate=True)
        assert np.array_equal(out_image, image) and out_image.dtype == np.float32
        assert np.array_equal(out_labels, labels) and out_labels.dtype == np.int32
        assert np.array_equal(out_weights, weight_map(labels, **weight_kwargs(WEIGHTS_CFG)))


def test_interpolation_at_whole_pixels_reproduces_flips_and_quarter_turns():
    image, labels = cells((48, 48))
    cases = {Transform(flip=(False, True)): np.s_[:, ::-1], Transform(flip=(True, False)): np.s_[::-1, :],
             Transform(angle=180.0): np.s_[::-1, ::-1]}
    for t, view in cases.items():
        grid = sampling_grid(t, image.shape)
        np.testing.assert_allclose(warp_image(image, grid), image[view], atol=1e-5)
        assert np.array_equal(warp_labels(labels, grid), labels[view])
    grid = sampling_grid(Transform(angle=90.0), image.shape)
    np.testing.assert_allclose(warp_image(image, grid), np.rot90(image, -1), atol=1e-5)


def test_a_constant_displacement_shifts_the_image_by_it():
    image, labels = cells()
    dy, dx = 3, -5
    grid = sampling_grid(Transform(elastic=constant_elastic(dy, dx)), image.shape)
    np.testing.assert_allclose(warp_image(image, grid)[:-dy, -dx:], image[dy:, :dx], atol=1e-5)
    assert np.array_equal(warp_labels(labels, grid)[:-dy, -dx:], labels[dy:, :dx])
    # beyond the border the image is mirrored without repeating the edge pixel (numpy's "reflect")
    padded = np.pad(image, ((0, dy), (-dx, 0)), mode="reflect")
    np.testing.assert_allclose(warp_image(image, grid), padded[dy:, :dx], atol=1e-5)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), shape=st.tuples(st.integers(2, 70), st.integers(2, 70)))
def test_sampling_grid_matches_the_composed_transform(seed, shape):
    t = draw_transform(AugmentParams.from_config(dict(scale_p=0.5)), np.random.default_rng(seed))
    got = grid_pixels(sampling_grid(t, shape), shape)
    np.testing.assert_allclose(got, source_coordinates(t, shape), atol=1e-3)


def test_displacement_field_is_elasticdeforms_bicubic_zoom_through_the_control_points():
    grid = np.random.default_rng(1).normal(0, 10, (2, 3, 3))
    field = displacement_field(grid, (61, 41))
    for i in range(2):
        np.testing.assert_allclose(field[i], ndimage.zoom(grid[i], (61 / 3, 41 / 3), order=3), atol=1e-10)
        np.testing.assert_allclose(field[i][::30, ::20], grid[i], atol=1e-10)  # control points at 0, (n-1)/2, n-1


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), big=st.booleans())
def test_deformed_label_ids_are_a_subset_of_the_inputs(seed, big):
    _, labels = cells((40, 52), seed=seed % 1000)
    if big:  # ids float32 cannot hold: the float64 path
        labels = np.where(labels > 0, labels + 2**30 + 1, 0).astype(np.int32)
    t = draw_transform(AugmentParams.from_config(dict(elastic_std=15.0, scale_p=1.0)), np.random.default_rng(seed))
    out = warp_labels(labels, sampling_grid(t, labels.shape))
    assert out.dtype == np.int32 and set(np.unique(out)) <= set(np.unique(labels))


def test_interpolated_weights_stay_within_the_source_range():
    _, labels = cells()
    weights = weight_map(labels)
    t = draw_transform(AugmentParams.from_config(), copy_rng(0, "w", 0, 0))
    out = warp_weights(weights, sampling_grid(t, weights.shape))
    assert weights.min() - 1e-5 <= out.min() and out.max() <= weights.max() + 1e-5
    _, _, w = augment_plane(cells()[0], labels, t, weights, weights_mode="interpolate")
    assert np.array_equal(w, out)
