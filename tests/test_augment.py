"""tileunet.augment: the transforms of a copy, drawn from the config, and the copy they make."""

import dataclasses

import numpy as np
import pytest

from synthetic import WEIGHTS_CFG
from synthetic import augment_cells as cells
from tileunet.config import defaults
from tileunet.augment import AugmentParams, Transform, augment_plane, copy_rng, draw_transform, vary_intensity
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


def test_params_default_to_the_papers_grid_and_bad_values_are_refused():
    params = AugmentParams.from_config()  # defaults: config/schema.yaml (tests/test_config.py)
    assert (params.elastic_grid, params.elastic_std) == (3, 10.0)  # the paper's
    for bad in ({"scale_min": 1.2, "scale_max": 1.1}, {"rotate_p": 1.5}, {"copies": 0}, {"weights_mode": "x"},
                {"rotat_p": 0.5}):
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
