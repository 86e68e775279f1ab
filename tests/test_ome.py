"""The prediction store: NGFF 0.5 metadata, pyramids, probability encoding, reading back."""

import dask.array as da
import numpy as np
import pytest
import tifffile
import zarr

from tileunet import ome
from tileunet.errors import InputError


def test_level_shapes_round_up_and_keep_the_stack_axis():
    assert ome.level_shapes((5, 7), 3) == [(5, 7), (3, 4), (2, 2)]
    assert ome.level_shapes((2, 8, 8), 2) == [(2, 8, 8), (2, 4, 4)]


@pytest.mark.parametrize("dtype, tol", [("float16", 1e-3), ("uint8", 0.5 / 255 + 1e-7)])
def test_probability_encoding_round_trips(dtype, tol):
    p = np.random.default_rng(0).random((17, 9)).astype(np.float32)
    stored = ome.encode_probability(p, dtype)
    assert stored.dtype == np.dtype(dtype)
    np.testing.assert_allclose(ome.decode_probability(stored), p, atol=tol, rtol=0)


def test_mean_downsampling_averages_the_pixels_an_odd_edge_has():
    b = np.arange(15, dtype=np.float16).reshape(3, 5)
    out = ome.downsample_probability(b)
    assert out.dtype == np.float16 and out.shape == (2, 3)
    assert out[0, 0] == np.mean([0, 1, 5, 6]) and out[0, 2] == np.mean([4, 9]) and out[1, 2] == 14
    assert ome.downsample_probability(np.array([[0, 255], [0, 0]], np.uint8))[0, 0] == 64


def test_label_downsampling_keeps_ids():
    lab = np.arange(20, dtype=np.int32).reshape(4, 5)
    assert ome.downsample_labels(lab).tolist() == [[0, 2, 4], [10, 12, 14]]


def make_store(tmp_path, shape=(3, 50, 37), chunk=16, levels=3, dtype="uint8"):
    root = ome.create_prediction(tmp_path / "p.ome.zarr", shape, chunk, dtype, levels, "z", {"note": 1})
    rng = np.random.default_rng(0)
    root["0"][...] = rng.integers(0, 256, shape).astype(dtype)
    root["labels/cells/0"][...] = rng.integers(0, 5, shape).astype(np.int32)
    ome.write_pyramid(root, ome.downsample_probability)
    ome.write_pyramid(root["labels/cells"], ome.downsample_labels)
    return root


def test_store_metadata_is_ngff_05(tmp_path):
    root = make_store(tmp_path)
    meta = root.attrs["ome"]
    assert meta["version"] == "0.5"
    ms = meta["multiscales"][0]
    assert [a["name"] for a in ms["axes"]] == ["z", "y", "x"] and ms["axes"][0]["type"] == "space"
    assert [d["path"] for d in ms["datasets"]] == ["0", "1", "2"]
    assert ms["datasets"][2]["coordinateTransformations"] == [
        {"type": "scale", "scale": [1.0, 4.0, 4.0]}, {"type": "translation", "translation": [0.0, 1.5, 1.5]}]
    assert meta["omero"]["channels"][0]["window"]["end"] == 255
    assert zarr.open_group(tmp_path / "p.ome.zarr/labels", mode="r").attrs["ome"]["labels"] == ["cells"]
    cells = zarr.open_group(tmp_path / "p.ome.zarr/labels/cells", mode="r").attrs["ome"]
    assert cells["image-label"]["source"] == {"image": "../../"}
    assert cells["multiscales"][0]["datasets"][1]["coordinateTransformations"] == [
        {"type": "scale", "scale": [1.0, 2.0, 2.0]}]
    assert root["0"].metadata.dimension_names == ("z", "y", "x") and root.attrs["tileunet"] == {"note": 1}


def test_pyramid_levels_follow_level_zero(tmp_path):
    root = make_store(tmp_path)
    lvl0 = root["0"][...]
    np.testing.assert_array_equal(root["1"][...], ome.downsample_probability(lvl0))
    np.testing.assert_array_equal(root["2"][...], ome.downsample_probability(ome.downsample_probability(lvl0)))
    np.testing.assert_array_equal(root["labels/cells/2"][...], root["labels/cells/0"][...][:, ::4, ::4])


def test_ome_zarr_reader_sees_image_and_labels(tmp_path):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Label, Multiscales, Reader
    make_store(tmp_path)
    nodes = list(Reader(parse_url(str(tmp_path / "p.ome.zarr")))())
    assert nodes[0].load(Multiscales) and len(nodes[0].data) == 3
    assert any(n.load(Label) for n in nodes)


def test_read_prediction_small_numpy_big_lazy(tmp_path):
    root = make_store(tmp_path)
    prob, lab = ome.read_prediction(tmp_path / "p.ome.zarr")
    assert isinstance(prob, np.ndarray) and prob.dtype == np.float32 and lab.dtype == np.int32
    np.testing.assert_array_equal(prob, root["0"][...] / np.float32(255))
    lazy_prob, lazy_lab = ome.read_prediction(tmp_path / "p.ome.zarr", max_pixels=100)
    assert isinstance(lazy_prob, da.Array) and lazy_prob.dtype == np.float32
    np.testing.assert_array_equal(lazy_prob.compute(), prob)
    np.testing.assert_array_equal(lazy_lab.compute(), lab)


def test_read_prediction_of_something_else_says_what_to_do(tmp_path):
    zarr.open_group(tmp_path / "x.zarr", mode="w")
    with pytest.raises(InputError, match="forcerun predict_sample"):
        ome.read_prediction(tmp_path / "x.zarr")


def test_existing_store_is_not_overwritten(tmp_path):
    make_store(tmp_path)
    with pytest.raises(Exception):
        ome.create_prediction(tmp_path / "p.ome.zarr", (4, 4), 4)


@pytest.mark.parametrize("axes, lead", [("TYX", "t"), ("ZYX", "z"), ("QYX", "t")])
def test_leading_axis_from_ome_tiff(tmp_path, axes, lead):
    path = tmp_path / "s.ome.tif"
    tifffile.imwrite(path, np.zeros((2, 8, 8), np.uint8), ome=axes != "QYX", metadata={"axes": axes})
    assert ome.guess_leading_axis(path) == lead


UM = {"y": (0.65, "micrometer"), "x": (0.65, "micrometer"), "z": (2.0, "micrometer")}


def test_pixel_size_reaches_every_level_and_the_axes(tmp_path):
    root = ome.create_prediction(tmp_path / "p.ome.zarr", (3, 50, 37), 16, "float16", 3, "z", pixel_size=UM)
    for group in (root, root["labels/cells"]):
        ms = group.attrs["ome"]["multiscales"][0]
        assert ms["axes"] == [{"name": a, "type": "space", "unit": "micrometer"} for a in "zyx"]
        scales = [d["coordinateTransformations"][0]["scale"] for d in ms["datasets"]]
        assert scales == [[2.0, 0.65, 0.65], [2.0, 1.3, 1.3], [2.0, 2.6, 2.6]]
    # the image's 2x2-mean levels are shifted by half a level-0 pixel per step, in micrometres
    shift = root.attrs["ome"]["multiscales"][0]["datasets"][2]["coordinateTransformations"][1]["translation"]
    np.testing.assert_allclose(shift, [0.0, 1.5 * 0.65, 1.5 * 0.65])


def test_time_axis_without_a_declared_interval_keeps_pixels(tmp_path):
    root = ome.create_prediction(tmp_path / "p.ome.zarr", (2, 8, 8), 8, "float16", 1, "t", pixel_size=UM)
    ms = root.attrs["ome"]["multiscales"][0]
    assert ms["axes"][0] == {"name": "t", "type": "time"}
    assert ms["datasets"][0]["coordinateTransformations"][0]["scale"] == [1.0, 0.65, 0.65]


@pytest.mark.parametrize("shape, lead", [((50, 37), "t"), ((3, 50, 37), "z"), ((2, 20, 20), "t")])
def test_whole_store_validates_with_ome_zarr_models(tmp_path, shape, lead):
    """The outside validator: image multiscales, the labels group and the label image, NGFF 0.5."""
    ome_zarr_models = pytest.importorskip("ome_zarr_models")
    from ome_zarr_models.v05.image import Image
    from ome_zarr_models.v05.image_label import ImageLabel
    from ome_zarr_models.v05.labels import Labels
    ome.create_prediction(tmp_path / "p.ome.zarr", shape, 16, "uint8", 2, lead, {"note": 1}, pixel_size=UM)
    path = tmp_path / "p.ome.zarr"
    image = ome_zarr_models.open_ome_zarr(zarr.open_group(path, mode="r"))
    labels = ome_zarr_models.open_ome_zarr(zarr.open_group(path / "labels", mode="r"))
    cells = ome_zarr_models.open_ome_zarr(zarr.open_group(path / "labels/cells", mode="r"))
    assert isinstance(image, Image) and isinstance(labels, Labels) and isinstance(cells, ImageLabel)
    assert labels.attributes.ome.labels == ["cells"] and labels.attributes.ome.version == "0.5"
    assert [a.name for a in image.attributes.ome.multiscales[0].axes][-2:] == ["y", "x"]
    assert image.attributes.ome.multiscales[0].axes[-1].unit == "micrometer"


def test_ome_zarr_reader_finds_image_and_cells_with_shapes_and_axes(tmp_path):
    """ome_zarr.reader (what napari-ome-zarr uses): the probability pyramid and the `cells` labels."""
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Label, Multiscales, Reader
    make_store(tmp_path)  # (3, 50, 37), z, 3 levels
    nodes = list(Reader(parse_url(str(tmp_path / "p.ome.zarr")))())
    image = next(n for n in nodes if n.load(Multiscales) and not n.load(Label))
    label = next(n for n in nodes if n.load(Label))
    for node in (image, label):
        assert [tuple(d.shape) for d in node.data] == ome.level_shapes((3, 50, 37), 3)
        assert [a["name"] for a in node.metadata["axes"]] == ["z", "y", "x"]
    assert label.metadata["name"] == "cells" and label.data[0].dtype == np.int32
    assert image.data[0].dtype == np.uint8


def test_napari_opens_the_prediction_as_an_image_and_a_labels_layer(tmp_path, monkeypatch):
    """napari's own reader path (npe2 + napari-ome-zarr), headless: ViewerModel needs no Qt."""
    npe2 = pytest.importorskip("npe2", reason="the napari check needs napari and napari-ome-zarr (pip)")
    pytest.importorskip("napari_ome_zarr", reason="the napari check needs napari-ome-zarr (pip)")
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    from napari.components import ViewerModel
    path = tmp_path / "p.ome.zarr"
    root = ome.create_prediction(path, (3, 50, 37), 16, "uint8", 2, "t", pixel_size=UM)
    root["0"][...] = 128
    root["labels/cells/0"][1, 5:9, 5:9] = 7
    ome.write_pyramid(root, ome.downsample_probability)
    ome.write_pyramid(root["labels/cells"], ome.downsample_labels)
    npe2.PluginManager.instance().discover()  # what napari's application does at start
    viewer = ViewerModel()
    viewer.open(str(path), plugin="napari-ome-zarr")
    kinds = {type(layer).__name__: layer for layer in viewer.layers}
    assert set(kinds) == {"Image", "Labels"}
    for layer in kinds.values():
        assert layer.multiscale and [tuple(d.shape) for d in layer.data] == ome.level_shapes((3, 50, 37), 2)
        assert tuple(layer.axis_labels) == ("t", "y", "x")
        np.testing.assert_allclose(layer.scale, [1.0, 0.65, 0.65])
        assert [str(u) for u in layer.units][1:] == ["micrometer", "micrometer"]
    assert int(np.asarray(kinds["Labels"].data[0][1, 6, 6])) == 7
