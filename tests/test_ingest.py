import logging

import numpy as np
import pytest
import tifffile
import zarr

from synthetic import touching_cells
from tileunet.errors import InputError
from tileunet.ingest import binary_to_instances, is_binary, load_pair, normalize, to_int32


def write(tmp_path, name, data, **kw):
    p = tmp_path / name
    tifffile.imwrite(p, data, **kw)
    return p


@pytest.fixture
def pair(tmp_path):
    image, labels = touching_cells()
    return write(tmp_path, "img.tif", image), write(tmp_path, "lab.tif", labels), image, labels


def test_good_pair_round_trips(pair):
    ip, lp, image, labels = pair
    im, lab, binary, _ = load_pair(ip, lp)
    assert np.array_equal(im, image) and np.array_equal(lab, labels)
    assert lab.dtype == np.int32 and not binary


def test_stacks_and_ome_tiff(tmp_path):
    a, la = touching_cells(seed=1)
    b, lb = touching_cells(seed=2)
    ip = write(tmp_path, "s.ome.tif", np.stack([a, b]), ome=True, metadata={"axes": "ZYX"})  # undeclared: CYX
    lp = write(tmp_path, "s_l.tif", np.stack([la, lb]))
    im, lab, _, _ = load_pair(ip, lp)
    assert im.shape == (2, 96, 128) and np.array_equal(lab[1], lb)


def test_zarr_sources(tmp_path, pair):
    _, _, image, labels = pair
    zarr.save_array(tmp_path / "i.zarr", image)
    g = zarr.open_group(tmp_path / "l.zarr", mode="w")
    g.create_array("0", data=labels)  # an OME-Zarr-like group: level 0 is used
    im, lab, _, _ = load_pair(tmp_path / "i.zarr", tmp_path / "l.zarr")
    assert np.array_equal(im, image) and np.array_equal(lab, labels)


def test_binary_mask_becomes_components_with_warning(tmp_path, pair, caplog):
    ip, _, _, labels = pair
    lp = write(tmp_path, "mask.tif", ((labels > 0) * 255).astype(np.uint8))
    with caplog.at_level(logging.WARNING):
        _, lab, binary, _ = load_pair(ip, lp)
    assert binary and "touching cells merge" in caplog.text
    assert np.array_equal(lab > 0, labels > 0) and lab.max() < labels.max()
    with pytest.raises(InputError, match="binary mask"):
        load_pair(ip, lp, binary_labels="error")


def test_binary_detection():
    one_cell = np.zeros((5, 5), int)
    one_cell[1:3, 1:3] = 1
    assert not is_binary(one_cell)  # a single cell is the same either way
    two = one_cell.copy()
    two[4, 4] = 1
    assert is_binary(two)
    stack = np.stack([one_cell, one_cell])  # one cell per plane: planes are not connected
    assert not is_binary(stack)
    assert binary_to_instances(np.stack([two, two])).max() == 2


@pytest.mark.parametrize("bad, message", [
    (lambda im, lab: (im, lab[:-1]), "has shape"),
    (lambda im, lab: (im, lab.astype(np.float32) + 0.5), "non-integer"),
    (lambda im, lab: (im, lab - 1), "negative"),
    (lambda im, lab: (np.where(lab > 0, np.nan, im.astype(np.float32)), lab), "NaN or infinite"),
    (lambda im, lab: (np.where(lab > 0, np.inf, im.astype(np.float32)), lab), "NaN or infinite"),
    (lambda im, lab: (np.stack([np.stack([im, im])] * 2), np.stack([np.stack([lab, lab])] * 2)), "tileunet takes 2D"),
    (lambda im, lab: (im[0], lab[0]), "tileunet takes 2D"),
])
def test_refuses_bad_pairs(tmp_path, pair, bad, message):
    _, _, image, labels = pair
    im, lab = bad(image, labels.astype(np.int32))
    ip, lp = write(tmp_path, "bad_i.tif", im), write(tmp_path, "bad_l.tif", lab)
    with pytest.raises(InputError, match=message) as err:
        load_pair(ip, lp)
    assert "Fix:" in str(err.value) and "bad_" in str(err.value)


def test_refuses_missing_and_corrupt_files(tmp_path, pair):
    ip, lp, _, _ = pair
    with pytest.raises(InputError, match="does not exist"):
        load_pair(tmp_path / "missing.tif", lp)
    corrupt = tmp_path / "corrupt.tif"
    corrupt.write_bytes(ip.read_bytes()[:200])
    with pytest.raises(InputError, match="cannot be read as TIFF|unreadable pixel data"):
        load_pair(corrupt, lp)
    other = tmp_path / "labels.png"
    other.write_bytes(b"\x89PNG")
    with pytest.raises(InputError, match="unsupported type"):
        load_pair(ip, other)


def test_float_labels_with_integer_values_are_accepted(tmp_path, pair):
    ip, _, _, labels = pair
    lp = write(tmp_path, "f.tif", labels.astype(np.float32))
    assert np.array_equal(load_pair(ip, lp)[1], labels)


def test_huge_ids_are_relabelled_to_int32():
    lab = np.array([[0, 2**40], [7, 2**40]], dtype=np.int64)
    out = to_int32(lab)
    assert out.dtype == np.int32 and len(np.unique(out)) == 3 and out[0, 0] == 0


def test_normalize_is_per_plane():
    a = np.linspace(0, 100, 10000).reshape(100, 100)
    out = normalize(np.stack([a, 10 * a + 5]), 0, 100)
    assert np.allclose(out[0], out[1], atol=1e-5) and out.dtype == np.float32
    assert out.min() == pytest.approx(0) and out.max() == pytest.approx(1)


def test_rgb_image_is_stored_channels_first_each_channel_normalised(tmp_path, pair):
    from tileunet.ingest import ingest_sample
    _, lp, image, labels = pair
    rgb = np.stack([image // 257, 255 - image // 257, (image // 514) + 100], axis=-1).astype(np.uint8)
    ip = write(tmp_path, "he.tif", rgb, photometric="rgb")
    shape, n = ingest_sample(ip, lp, tmp_path / "he.zarr", "train", low=1.0, high=99.8)
    group = zarr.open_group(tmp_path / "he.zarr", mode="r")
    stored = group["image"]
    assert shape == (3, 96, 128) and stored.shape == (3, 96, 128) and stored.attrs["channels"] == ["R", "G", "B"]
    for c in range(3):  # each channel on its own percentiles: 1 % and 99.8 % go to 0 and 1
        lo, hi = np.percentile(stored[c], [1.0, 99.8])
        assert lo == pytest.approx(0, abs=0.02) and hi == pytest.approx(1, abs=0.02)
    assert np.corrcoef(stored[0].ravel(), stored[1].ravel())[0, 1] < -0.99  # G is R inverted: not mixed
    assert np.array_equal(group["labels"][...], labels) and n == labels.max()
    shape, _ = ingest_sample(ip, lp, tmp_path / "g.zarr", "train", channels=["G"])
    assert shape == (96, 128) and "channels" not in zarr.open_group(tmp_path / "g.zarr", mode="r")["image"].attrs
