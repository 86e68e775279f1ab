"""tileunet.augment: the composed sampling grid, the transforms, and the materialised Zarr store."""

import dataclasses
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import zarr
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from synthetic import touching_cells
from tileunet import __version__
from tileunet.augment import (AugmentParams, Transform, augment_plane, copy_rng, dataset_frequencies,
                              displacement_field, draw_transform, sampling_grid, vary_intensity, warp_image,
                              warp_labels, warp_weights, write_augmented)
from tileunet.config import load_schema
from tileunet.errors import InputError
from tileunet.weights import separate_touching, weight_kwargs, weight_map

ROOT = Path(__file__).resolve().parent.parent
NOTHING = dict(elastic_p=0.0, rotate_p=0.0, flip_p=0.0, shift_p=0.0, scale_p=0.0, brightness_p=0.0, contrast_p=0.0,
               gamma_p=0.0, noise_p=0.0)
WEIGHTS_CFG = {"w0": 10.0, "sigma": 5.0, "tol": 1e-4, "border_region": "background",
               "class_balance": "inverse_frequency", "class_weights": [1.0, 1.0], "frequency_scope": "image",
               "separate_touching": True, "spacing": [1.0, 1.0], "border_term": True}


def cells(shape=(64, 80), seed=0, n_cells=6):
    image, labels = touching_cells(shape, n_cells=n_cells, radius=8, seed=seed)
    return (image / 1000.0).astype(np.float32), separate_touching(labels)


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
    for params in (AugmentParams(**NOTHING), AugmentParams(**{**NOTHING, "elastic_p": 1.0, "elastic_std": 0.0})):
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
    t = draw_transform(AugmentParams(scale_p=0.5), np.random.default_rng(seed))
    got = grid_pixels(sampling_grid(t, shape), shape)
    np.testing.assert_allclose(got, source_coordinates(t, shape), atol=1e-3)


def test_displacement_field_is_elasticdeforms_bicubic_zoom_through_the_control_points():
    grid = np.random.default_rng(1).normal(0, 10, (2, 3, 3))
    field = displacement_field(grid, (61, 41))
    for i in range(2):
        np.testing.assert_allclose(field[i], ndimage.zoom(grid[i], (61 / 3, 41 / 3), order=3), atol=1e-10)
        np.testing.assert_allclose(field[i][::30, ::20], grid[i], atol=1e-10)  # control points at 0, (n-1)/2, n-1


def test_grid_displacement_statistics_match_the_configured_std():
    params = AugmentParams(elastic_std=7.0, elastic_grid=4, elastic_p=1.0)
    grids = np.array([draw_transform(params, copy_rng(5, "s", 0, k)).elastic for k in range(400)])
    assert grids.shape == (400, 2, 4, 4)
    assert abs(grids.std() - 7.0) < 0.35 and abs(grids.mean()) < 0.3
    drawn = [draw_transform(AugmentParams(elastic_p=0.25), copy_rng(5, "s", 0, k)).elastic is not None
             for k in range(400)]
    assert 0.19 < np.mean(drawn) < 0.31


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), big=st.booleans())
def test_deformed_label_ids_are_a_subset_of_the_inputs(seed, big):
    _, labels = cells((40, 52), seed=seed % 1000)
    if big:  # ids float32 cannot hold: the float64 path
        labels = np.where(labels > 0, labels + 2**30 + 1, 0).astype(np.int32)
    t = draw_transform(AugmentParams(elastic_std=15.0, scale_p=1.0), np.random.default_rng(seed))
    out = warp_labels(labels, sampling_grid(t, labels.shape))
    assert out.dtype == np.int32 and set(np.unique(out)) <= set(np.unique(labels))


def test_interpolated_weights_stay_within_the_source_range():
    _, labels = cells()
    weights = weight_map(labels)
    t = draw_transform(AugmentParams(), copy_rng(0, "w", 0, 0))
    out = warp_weights(weights, sampling_grid(t, weights.shape))
    assert weights.min() - 1e-5 <= out.min() and out.max() <= weights.max() + 1e-5
    _, _, w = augment_plane(cells()[0], labels, t, weights, weights_mode="interpolate")
    assert np.array_equal(w, out)


def test_recomputed_weights_follow_the_deformed_and_recarved_labels():
    image, labels = cells()
    t = draw_transform(AugmentParams(elastic_std=12.0, scale_p=1.0), copy_rng(3, "r", 0, 1))
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


def test_params_defaults_are_the_schemas_and_bad_values_are_refused():
    schema = load_schema()["properties"]["augment"]["properties"]
    defaults = {f.name: f.default for f in dataclasses.fields(AugmentParams)}
    assert defaults == {k: v["default"] for k, v in schema.items()}
    assert (defaults["elastic_grid"], defaults["elastic_std"]) == (3, 10.0)  # the paper's
    for bad in ({"scale_min": 1.2, "scale_max": 1.1}, {"rotate_p": 1.5}, {"copies": 0}, {"weights_mode": "x"},
                {"rotat_p": 0.5}):
        with pytest.raises(InputError, match="augment"):
            AugmentParams.from_config(bad)


def test_changing_one_probability_leaves_the_other_draws_unchanged():
    a = draw_transform(AugmentParams(), copy_rng(0, "s", 0, 0))
    b = draw_transform(AugmentParams(noise_p=1.0, rotate_p=0.0), copy_rng(0, "s", 0, 0))
    assert a.elastic == b.elastic and a.shift == b.shift and b.angle == 0.0 and b.noise_std == 0.03


# --- the store ----------------------------------------------------------------------------------

def make_store(path, image, labels, frequencies=None):
    group = zarr.open_group(path, mode="w", zarr_format=3)
    group.create_array("image", data=image.astype(np.float32))
    group.create_array("labels", data=labels.astype(np.int32))
    stack = labels if labels.ndim == 3 else labels[None]
    weights = group.create_array("weights", data=np.stack([weight_map(p) for p in stack]).reshape(labels.shape))
    if frequencies is not None:
        weights.attrs["parameters"] = {"frequencies": frequencies}
    return path


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("data")
    a = make_store(tmp / "a.zarr", *cells((40, 56), seed=1))
    planes = [cells((36, 44), seed=s) for s in (2, 3)]
    b = make_store(tmp / "b.zarr", np.stack([p[0] for p in planes]), np.stack([p[1] for p in planes]))
    return {"a": a, "b": b}


def files(root):
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def written(stores, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("out")
    cfg = {"copies": 2, "noise_p": 1.0, "gamma_p": 1.0}
    one = write_augmented(stores, tmp / "one.zarr", cfg, WEIGHTS_CFG, seed=11, threads=1)
    two = write_augmented(stores, tmp / "two.zarr", cfg, WEIGHTS_CFG, seed=11, threads=2, min_parallel_px=0)
    return one, two


def test_one_and_two_threads_give_byte_identical_stores(written):
    one, two = written
    a, b = files(one), files(two)
    assert a.keys() == b.keys() and len(a) > 10
    assert all(a[k] == b[k] for k in a)


def test_store_layout_and_attributes_open_with_plain_zarr(written, stores):
    root = zarr.open(written[0], mode="r")
    assert set(root.group_keys()) == {"a", "b"}
    assert root.attrs["seed"] == 11 and root.attrs["tileunet_version"] == __version__
    assert root.attrs["augment"]["copies"] == 2 and root.attrs["weights"]["sigma"] == 5.0
    for name, planes, shape in (("a", 1, (40, 56)), ("b", 2, (36, 44))):
        g = root[name]
        assert g.attrs["source"] == str(stores[name]) and g.attrs["planes"] == planes
        assert g.attrs["augment"] == dataclasses.asdict(AugmentParams(copies=2, noise_p=1.0, gamma_p=1.0))
        assert len(g.attrs["transforms"]) == planes * 2 and g.attrs["seed"] == 11
        for arr, dtype in (("image", np.float32), ("labels", np.int32), ("weights", np.float32)):
            assert g[arr].shape == (planes * 2,) + shape and g[arr].dtype == dtype
            assert g[arr].chunks == (1,) + shape and g[arr].compressors
        labels = g["labels"][...]
        source = zarr.open_group(stores[name], mode="r")["labels"][...]
        assert set(np.unique(labels)) <= set(np.unique(source))
        assert np.array_equal(g["weights"][1], weight_map(labels[1], **weight_kwargs(WEIGHTS_CFG)))
    # the copies differ, and the stored transform rebuilds a copy
    g = root["b"]
    assert not np.array_equal(g["image"][0], g["image"][1])
    t = Transform.from_dict(g.attrs["transforms"][3])
    assert t.to_dict() == g.attrs["transforms"][3] and t.noise_std == 0.03
    src = zarr.open_group(stores["b"], mode="r")
    image, labels, _ = augment_plane(src["image"][1], src["labels"][1], t, weights_kwargs={}, separate=True)
    assert np.array_equal(image, g["image"][3]) and np.array_equal(labels, g["labels"][3])


def test_a_sample_copies_do_not_depend_on_the_other_samples(written, stores, tmp_path):
    alone = write_augmented({"a": stores["a"]}, tmp_path / "alone.zarr", {"copies": 2, "noise_p": 1.0, "gamma_p": 1.0},
                            WEIGHTS_CFG, seed=11)
    for arr in ("image", "labels", "weights"):
        assert np.array_equal(zarr.open(alone)["a"][arr][...], zarr.open(written[0])["a"][arr][...])
    other = write_augmented({"a": stores["a"]}, tmp_path / "other.zarr", {"copies": 2}, WEIGHTS_CFG, seed=12)
    assert not np.array_equal(zarr.open(other)["a"]["image"][...], zarr.open(alone)["a"]["image"][...])


def test_dataset_frequencies_from_the_source_weights_are_used(tmp_path):
    image, labels = cells(seed=4)
    store = make_store(tmp_path / "s.zarr", image, labels, frequencies=[0.5, 0.5])
    cfg = {**WEIGHTS_CFG, "frequency_scope": "dataset"}
    out = write_augmented({"s": store}, tmp_path / "aug.zarr", {"copies": 1}, cfg, seed=0)
    g = zarr.open_group(out, mode="r")["s"]
    assert g.attrs["frequencies"] == [0.5, 0.5]
    expected = weight_map(g["labels"][0], **weight_kwargs(cfg, [0.5, 0.5]))
    assert np.array_equal(g["weights"][0], expected)
    assert not np.array_equal(expected, weight_map(g["labels"][0], **weight_kwargs(WEIGHTS_CFG)))
    assert dataset_frequencies({"frequencies": [0.7, 0.3]}) == [0.7, 0.3] and dataset_frequencies({}) is None
    bare = make_store(tmp_path / "bare.zarr", image, labels)
    with pytest.warns(UserWarning, match="frequencies"):
        write_augmented({"s": bare}, tmp_path / "aug2.zarr", {"copies": 1}, cfg, seed=0)


def test_bad_source_is_refused_naming_it_and_nothing_is_left(tmp_path, stores):
    broken = tmp_path / "broken.zarr"
    zarr.open_group(broken, mode="w", zarr_format=3).create_array("image", data=np.zeros((8, 8), np.float32))
    out = tmp_path / "aug.zarr"
    with pytest.raises(InputError, match="broken.zarr.*labels"):
        write_augmented({"a": stores["a"], "x": broken}, out, {"copies": 1}, WEIGHTS_CFG)
    with pytest.raises(InputError, match="no training sample"):
        write_augmented({}, out, {"copies": 1}, WEIGHTS_CFG)
    assert list(tmp_path.iterdir()) == [broken]


def test_examples_show_each_copy_around_its_cells(tmp_path):
    from tileunet.plots.augment import examples_figure

    root = zarr.open_group(tmp_path / "a.zarr", mode="w")
    labels = np.zeros((2, 200, 300), np.int32)
    labels[0, 10:20, 250:280] = 1
    g = root.create_group("s", attributes={"copies": 2})
    for name, data in (("image", labels.astype(np.float32)), ("labels", labels), ("weights", 1.0 + labels)):
        g.create_array(name, data=data)
    fig = examples_figure(root, n=2, margin=4)
    shapes = [ax.images[0].get_array().shape[:2] for ax in fig.axes[:4] if ax.images]
    assert shapes[0] == (18, 38) and (200, 300) in shapes  # the copy without cells is shown whole


def test_script_writes_store_and_examples_png(stores, tmp_path, run_script):
    out = tmp_path / "results"
    (out / "augment").mkdir(parents=True)
    run_script("augment.py",
               input=SimpleNamespace(image=[str(stores[s] / "image" / "zarr.json") for s in ("a", "b")]),
               output=SimpleNamespace(store=str(out / "augmented.zarr"), examples=str(out / "augment" / "examples.png")),
               params=SimpleNamespace(samples=["a", "b"],
                                      cfg={**dataclasses.asdict(AugmentParams()), "copies": 1, "preview": 3},
                                      weights_cfg=WEIGHTS_CFG, seed=0),
               log=[str(tmp_path / "augment.log")], threads=1)
    assert zarr.open_group(out / "augmented.zarr", mode="r")["b"]["image"].shape == (2, 36, 44)
    assert (out / "augment" / "examples.png").read_bytes()[:4] == b"\x89PNG"
    assert "augmented copies" in (tmp_path / "augment.log").read_text()
