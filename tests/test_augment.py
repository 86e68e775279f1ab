"""tileunet.augment: the transforms of a copy, drawn from the config, and the copy they make."""

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from synthetic import WEIGHTS_CFG
from synthetic import augment_cells as cells
from tileunet.config import defaults
from tileunet.augment import (AugmentParams, Transform, augment_plane, contrast_field, copy_rng, draw_transform,
                              vary_intensity)
from tileunet.config import load_schema
from tileunet.errors import InputError
from tileunet.labels import separate_touching
from tileunet.weights import weight_kwargs, weight_map


def test_grid_displacement_statistics_match_the_configured_std():
    params = AugmentParams.from_config(dict(elastic_std=7.0, elastic_grid=4, elastic_p=1.0))
    grids = np.array([draw_transform(params, copy_rng(5, "s", 0, k)).elastic for k in range(400)])
    assert grids.shape == (400, 2, 4, 4)
    assert abs(grids.std() - 7.0) < 0.35 and abs(grids.mean()) < 0.3
    drawn = [draw_transform(AugmentParams.from_config(dict(elastic_p=0.25)), copy_rng(5, "s", 0, k)).elastic is not None
             for k in range(400)]
    assert 0.19 < np.mean(drawn) < 0.31


def test_recomputed_weights_follow_the_deformed_and_recarved_labels():
    image, labels = cells()
    t = draw_transform(AugmentParams.from_config(dict(elastic_std=12.0, scale_p=1.0)), copy_rng(3, "r", 0, 1))
    kwargs = weight_kwargs(WEIGHTS_CFG)
    _, out_labels, out_weights = augment_plane(image, labels, t, weights_kwargs=kwargs, separate=True)
    assert np.array_equal(out_labels, separate_touching(out_labels))  # no two cells 8-adjacent
    assert np.array_equal(out_weights, weight_map(out_labels, **kwargs))


# --- gray values and parameters ------------------------------------------------------------------

def test_gray_value_variations():
    image = np.linspace(-0.2, 1.3, 64 * 48, dtype=np.float32).reshape(64, 48)
    assert np.array_equal(vary_intensity(image, Transform()), image)
    np.testing.assert_allclose(vary_intensity(image, Transform(brightness=0.1)), image + 0.1, atol=1e-6)
    out = vary_intensity(image, Transform(contrast=1.5))
    assert abs(out.mean() - image.mean()) < 1e-5 and np.isclose(out.std(), 1.5 * image.std(), rtol=1e-4)
    out = vary_intensity(image, Transform(gamma=2.0))
    assert np.isclose(out.min(), image.min()) and np.isclose(out.max(), image.max()) and out.mean() < image.mean()
    noisy = vary_intensity(image, Transform(noise_std=0.05, noise_seed=7))
    assert abs((noisy - image).std() - 0.05) < 0.005
    assert np.array_equal(noisy, vary_intensity(image, Transform(noise_std=0.05, noise_seed=7)))


@settings(max_examples=30, deadline=None)
@given(shape=st.tuples(st.integers(2, 90), st.integers(2, 90)), lowest=st.floats(0.05, 1.0),
       spacing=st.floats(4.0, 200.0), seed=st.integers(0, 2**63 - 1))
def test_contrast_field_is_a_reproducible_factor_in_its_range(shape, lowest, spacing, seed):
    field = contrast_field(shape, lowest, spacing, seed)
    assert field.shape == shape and field.dtype == np.float32
    assert field.min() >= np.float32(lowest) and field.max() <= 1.0
    assert np.array_equal(field, contrast_field(shape, lowest, spacing, seed))


def test_contrast_field_is_smooth_on_its_spacing_and_dims_some_places_only():
    field = contrast_field((400, 500), 0.3, 48.0, seed=1)
    assert np.abs(np.diff(field, axis=0)).max() < 0.1 and np.abs(np.diff(field, axis=1)).max() < 0.1
    assert field.min() < 0.4 and field.max() > 0.9  # a cell here keeps its contrast, one there loses most of it
    assert not np.array_equal(field, contrast_field((400, 500), 0.3, 48.0, seed=2))


def test_local_contrast_scales_each_pixel_about_the_mean_by_the_field():
    image = np.random.default_rng(0).normal(1.0, 3.0, (120, 90)).astype(np.float32)
    t = Transform(local_contrast=0.3, local_contrast_spacing=30.0, local_contrast_seed=5)
    out = vary_intensity(image, t)
    mean = image.mean(dtype=np.float64)
    ratio = (out - mean) / (image - mean)
    np.testing.assert_allclose(ratio, contrast_field(image.shape, 0.3, 30.0, 5), rtol=1e-3, atol=1e-3)
    assert np.array_equal(vary_intensity(image, t), out)


def test_local_contrast_is_drawn_after_everything_else():
    """Switching it on changes no other draw, so the copies of a config without it stay as they were."""
    off = draw_transform(AugmentParams.from_config(), copy_rng(0, "s", 0, 0))
    on = draw_transform(AugmentParams.from_config(dict(local_contrast_p=1.0, local_contrast_min=0.4)),
                        copy_rng(0, "s", 0, 0))
    assert (off.local_contrast, off.local_contrast_spacing) == (1.0, 0.0)
    assert (on.local_contrast, on.local_contrast_spacing) == (0.4, 48.0)
    assert dataclasses.replace(on, local_contrast=1.0, local_contrast_spacing=0.0) == off
    assert Transform.from_dict(on.to_dict()) == on


def test_params_default_to_the_papers_grid_and_bad_values_are_refused():
    params = AugmentParams.from_config()  # defaults: config/schema.yaml (tests/test_config.py)
    assert (params.elastic_grid, params.elastic_std) == (3, 10.0)  # the paper's
    for bad in ({"scale_min": 1.2, "scale_max": 1.1}, {"rotate_p": 1.5}, {"copies": 0}, {"weights_mode": "x"},
                {"rotat_p": 0.5}, {"local_contrast_min": 0.0}, {"local_contrast_min": 1.5},
                {"local_contrast_spacing": 0.0}):
        with pytest.raises(InputError, match="augment"):
            AugmentParams.from_config(bad)


def test_changing_one_probability_leaves_the_other_draws_unchanged():
    a = draw_transform(AugmentParams.from_config(), copy_rng(0, "s", 0, 0))
    b = draw_transform(AugmentParams.from_config(dict(noise_p=1.0, rotate_p=0.0)), copy_rng(0, "s", 0, 0))
    assert a.elastic == b.elastic and a.shift == b.shift and b.angle == 0.0 and b.noise_std == 0.03


def test_params_have_the_schemas_keys_and_take_its_defaults():
    built = dataclasses.asdict(AugmentParams.from_config())
    assert set(built) == set(load_schema()["properties"]["augment"]["properties"]) and built == defaults("augment")


def test_channels_share_one_field_and_each_gets_its_own_gray_range():
    """(C, Y, X): every channel deformed by the one field, gamma and contrast per channel (noise aside)."""
    image, labels = cells(seed=4)
    other = (1.5 - image) ** 2  # another channel with another range and mean
    t = draw_transform(AugmentParams.from_config(dict(elastic_std=12.0, scale_p=1.0, rotate_p=1.0, gamma_p=1.0,
                                                      contrast_p=1.0)), copy_rng(2, "c", 0, 3))
    t = dataclasses.replace(t, noise_std=0.0)
    assert t.elastic is not None and t.gamma != 1.0 and t.contrast != 1.0
    both, both_labels, _ = augment_plane(np.stack([image, other]), labels, t)
    for c, single in enumerate((image, other)):
        alone, alone_labels, _ = augment_plane(single, labels, t)
        np.testing.assert_allclose(both[c], alone, rtol=1e-6, atol=1e-6)
        assert np.array_equal(both_labels, alone_labels)
    assert both.shape == (2,) + labels.shape and both.dtype == np.float32
