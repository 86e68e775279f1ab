"""tileunet.augmented_set: the materialised Zarr store, byte-identical for any thread count, and its script."""

import dataclasses
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import zarr

from synthetic import WEIGHTS_CFG
from synthetic import augment_cells as cells
from tileunet import __version__
from tileunet.augment import AugmentParams, Transform, augment_plane, dataset_frequencies
from tileunet.augmented_set import write_augmented
from tileunet.errors import InputError
from tileunet.weights import weight_kwargs, weight_map

ROOT = Path(__file__).resolve().parent.parent


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
        assert g.attrs["augment"] == dataclasses.asdict(AugmentParams.from_config(dict(copies=2, noise_p=1.0, gamma_p=1.0)))
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
                                      cfg={**dataclasses.asdict(AugmentParams.from_config()), "copies": 1, "preview": 3},
                                      weights_cfg=WEIGHTS_CFG, seed=0),
               log=[str(tmp_path / "augment.log")], threads=1)
    assert zarr.open_group(out / "augmented.zarr", mode="r")["b"]["image"].shape == (2, 36, 44)
    assert (out / "augment" / "examples.png").read_bytes()[:4] == b"\x89PNG"
    assert "augmented copies" in (tmp_path / "augment.log").read_text()
