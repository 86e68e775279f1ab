"""Channels: recognised from the file's metadata, selected by name or index, read lazily in (C, Y, X) order."""

import logging
import tracemalloc

import numpy as np
import pytest
import tifffile
import zarr
from hypothesis import given, settings
from hypothesis import strategies as st

from synthetic import tiny_unet
from tileunet.channels import AxisView, channel_axis, channel_names, check_model_channels, select_channels, \
    spatial_shape
from tileunet.errors import InputError
from tileunet.io import open_image, read_image


def tif(tmp_path, name, data, **kw):
    path = tmp_path / name
    tifffile.imwrite(path, data, **kw)
    return path


@pytest.fixture(scope="module")
def planes():
    rng = np.random.default_rng(0)
    return rng.integers(0, 60000, (3, 40, 56), dtype=np.uint16)


# -- the channel axis and names ---------------------------------------------------------------

@pytest.mark.parametrize("shape, axes, expected", [
    ((3, 40, 56), "cyx", 0), ((40, 56, 3), "yxs", 2), ((5, 2, 40, 56), "tcyx", 1), ((2, 5, 40, 56), "czyx", 0),
    ((1, 40, 56), "cyx", None),  # one channel: no channel axis
    ((40, 56, 3), None, 2),  # undeclared, interleaved by its shape
    ((3, 40, 56), None, None),  # undeclared planar: a stack of three planes, as before
    ((3, 40, 56), "zyx", None), ((40, 56, 3), "yxq", None),  # declared: the shape is not read
])
def test_channel_axis_from_declared_axes_then_shape(shape, axes, expected):
    assert channel_axis(shape, axes, "f.tif") == expected


def test_two_channel_axes_are_refused():
    with pytest.raises(InputError, match=r"two channel axes \(axes CYXS") as err:
        channel_axis((2, 40, 56, 3), "cyxs", "odd.tif")
    assert "odd.tif" in str(err.value) and "Fix:" in str(err.value)


@pytest.mark.parametrize("n, axes, ngff, expected", [
    (3, "yxs", None, ["R", "G", "B"]), (4, None, None, ["R", "G", "B", "A"]), (3, "cyx", None, ["0", "1", "2"]),
    (2, "cyx", {"omero": {"channels": [{"label": "DAPI"}, {"label": "GFP"}]}}, ["DAPI", "GFP"]),
    (2, "cyx", {"omero": {"channels": [{"label": "A"}, {"label": "A"}]}}, ["0", "1"]),  # ambiguous names: indices
    (2, "cyx", {"omero": {"channels": [{"label": "A"}]}}, ["0", "1"]),  # a count that does not match
])
def test_channel_names(tmp_path, n, axes, ngff, expected):
    assert channel_names(tmp_path / "x.zarr", n, axes, ngff) == expected


def test_select_channels_by_index_and_name_in_the_asked_order():
    names = ["DAPI", "GFP", "RFP"]
    assert select_channels(None, names, "f") == [0, 1, 2]
    assert select_channels(["RFP", 0], names, "f") == [2, 0]
    for bad, message in (([3], "has no channel 3: its 3 channel"), (["CY5"], "has no channel 'CY5'"),
                         ([True], "has no channel True"), ([1, "GFP"], "names a channel twice")):
        with pytest.raises(InputError, match=message) as err:
            select_channels(bad, names, "slide.ome.tif")
        assert "slide.ome.tif" in str(err.value) and "Fix:" in str(err.value)


# -- the lazy view ----------------------------------------------------------------------------

@st.composite
def views(draw):
    ndim = draw(st.integers(3, 5))
    shape = draw(st.lists(st.integers(1, 4), min_size=ndim, max_size=ndim))
    chan = draw(st.integers(0, ndim - 1))
    shape[chan] = draw(st.integers(2, 4))
    others = [a for a in range(ndim) if a != chan]
    fixed = {a: 0 for a in others[:-2] if shape[a] == 1 or draw(st.booleans())}
    fixed = {a: draw(st.integers(0, shape[a] - 1)) for a in fixed}
    keep = draw(st.lists(st.integers(0, shape[chan] - 1), min_size=1, max_size=shape[chan], unique=True))
    return np.arange(np.prod(shape)).reshape(shape), fixed, chan, keep


def reference(array, fixed, chan, keep):
    """The view by numpy alone: fix axes, move channels in front of (Y, X), select."""
    index = tuple(fixed.get(a, slice(None)) for a in range(array.ndim))
    moved = np.moveaxis(array, chan, -1)[tuple(i for a, i in enumerate(index) if a != chan)]
    moved = np.moveaxis(moved, -1, -3)
    moved = np.take(moved, keep, axis=-3)
    return moved[..., 0, :, :] if len(keep) == 1 else moved


def key_for(draw, shape):
    key = []
    for n in shape:
        kind = draw(st.sampled_from(["int", "slice", "all"]))
        if kind == "int":
            key.append(draw(st.integers(-n, n - 1)))
        elif kind == "slice":
            lo = draw(st.integers(0, n))
            key.append(slice(lo, draw(st.integers(lo, n))))
        else:
            key.append(slice(None))
    return tuple(key)


@settings(max_examples=150, deadline=None)
@given(views(), st.data())
def test_axis_view_equals_numpy_reordering(view_args, data):
    array, fixed, chan, keep = view_args
    view, ref = AxisView(array, fixed, chan, keep), reference(array, fixed, chan, keep)
    assert view.shape == ref.shape and view.ndim == ref.ndim and len(view) == len(ref)
    np.testing.assert_array_equal(np.asarray(view), ref)
    key = key_for(data.draw, view.shape)
    np.testing.assert_array_equal(view[key], ref[key])
    np.testing.assert_array_equal(view[..., -1], ref[..., -1])


def test_axis_view_refuses_what_it_cannot_slice():
    view = AxisView(np.zeros((3, 4, 5)), chan=0, keep=[2, 0])
    assert view.shape == (2, 4, 5)
    for key in ((0, 0, 0, 0), (2,), (np.array([0, 1]),)):
        with pytest.raises(IndexError):
            view[key]


def test_spatial_shape():
    assert spatial_shape((3, 40, 56), 3) == (40, 56) and spatial_shape((5, 3, 40, 56), 3) == (5, 40, 56)
    assert spatial_shape((5, 40, 56)) == (5, 40, 56)


# -- files as users have them -----------------------------------------------------------------

def test_rgb_tiff_becomes_three_channels_in_front(tmp_path, planes):
    rgb = np.moveaxis(planes, 0, -1).astype(np.uint8)
    view, names = open_image(tif(tmp_path, "he.tif", rgb, photometric="rgb"))
    assert names == ["R", "G", "B"] and view.shape == (3, 40, 56)
    np.testing.assert_array_equal(view[...], np.moveaxis(rgb, -1, 0))
    view, names = open_image(tmp_path / "he.tif", ["B", "R"])
    np.testing.assert_array_equal(view[:, 5:9, 7], np.moveaxis(rgb, -1, 0)[[2, 0], 5:9, 7])
    assert names == ["B", "R"]
    view, names = open_image(tmp_path / "he.tif", [1])  # one channel: a grey (Y, X) image
    assert view.shape == (40, 56) and names == ["G"]


def test_planar_stack_saved_as_minisblack_is_not_colour(tmp_path, planes):
    view, names = open_image(tif(tmp_path, "z.tif", planes, photometric="minisblack"))
    assert view.shape == (3, 40, 56) and names == ["0"]  # three planes of one channel


@pytest.mark.parametrize("axes, shape, expected", [
    ("CYX", (3, 40, 56), (3, 40, 56)), ("TCYX", (2, 3, 40, 56), (2, 3, 40, 56)),
    ("ZCYX", (2, 3, 40, 56), (2, 3, 40, 56)), ("CZYX", (3, 2, 40, 56), (2, 3, 40, 56)),
    ("TCZYX", (1, 3, 1, 40, 56), (3, 40, 56)),
])
def test_ome_tiff_channels_with_their_names(tmp_path, planes, axes, shape, expected):
    data = np.broadcast_to(planes.reshape((3,) + (1,) * (len(shape) - 3) + (40, 56)),
                           (3,) + tuple(s for a, s in zip(axes, shape) if a != "C")).copy()
    data = np.moveaxis(data, 0, axes.index("C"))
    path = tif(tmp_path, "f.ome.tif", data, ome=True,
               metadata={"axes": axes, "Channel": {"Name": ["DAPI", "GFP", "RFP"]}})
    view, names = open_image(path)
    assert names == ["DAPI", "GFP", "RFP"] and view.shape == expected
    image = np.asarray(view)
    np.testing.assert_array_equal(image[(0,) * (image.ndim - 3)], planes)
    view, names = open_image(path, ["RFP", "DAPI"])
    np.testing.assert_array_equal(np.asarray(view)[(0,) * (image.ndim - 3)], planes[[2, 0]])


def test_imagej_hyperstack_channels(tmp_path, planes):
    view, names = open_image(tif(tmp_path, "ij.tif", planes[None], imagej=True, metadata={"axes": "ZCYX"}))
    assert view.shape == (3, 40, 56) and names == ["0", "1", "2"]
    np.testing.assert_array_equal(view[...], planes)


def ome_zarr_image(path, data, axes, labels=None):
    """An OME-Zarr image as ome-zarr-py writes it (levels s0, s1...), with omero channel labels."""
    from ome_zarr.writer import write_image
    group = zarr.open_group(path, mode="w")
    window = {"start": 0, "end": 65535, "min": 0, "max": 65535}
    omero = {"channels": [{"label": lab, "color": "FFFFFF", "window": window, "active": True}
                          for lab in labels]} if labels else None
    write_image(data, group, axes=axes, scale_factors=(2,), **({"omero": omero} if omero else {}))
    return path


def test_ome_zarr_from_ome_zarr_py_opens_at_level_0_with_its_channel_names(tmp_path, planes):
    path = ome_zarr_image(tmp_path / "img.ome.zarr", planes, "cyx", ["DAPI", "GFP", "RFP"])
    assert sorted(p.name for p in path.iterdir() if p.is_dir()) == ["s0", "s1"]  # no array '0'
    for source in (path, path / "s0"):
        view, names = open_image(source, ["GFP", "DAPI"])
        assert names == ["GFP", "DAPI"]
        np.testing.assert_array_equal(view[...], planes[[1, 0]])
    zarr.open_group(tmp_path / "bf2raw.zarr", mode="w")  # bioformats2raw: a store of images 0, 1...
    ome_zarr_image(tmp_path / "bf2raw.zarr" / "0", planes, "cyx", ["DAPI", "GFP", "RFP"])
    view, names = open_image(tmp_path / "bf2raw.zarr")
    assert names == ["DAPI", "GFP", "RFP"] and view.shape == (3, 40, 56)


def test_ome_zarr_stack_of_channels(tmp_path, planes):
    data = np.stack([planes, planes[::-1]])
    view, names = open_image(ome_zarr_image(tmp_path / "tc.zarr", data, "tcyx"))
    assert names == ["0", "1", "2"] and view.shape == (2, 3, 40, 56)
    np.testing.assert_array_equal(view[1, 0], planes[2])


@pytest.mark.parametrize("datasets, message", [
    ([], "multiscales metadata lists no level 0 dataset"),
    ([{"path": "full"}], "level 0 dataset 'full' .multiscales metadata. is not an array"),
])
def test_pyramid_without_level_0_is_refused(tmp_path, planes, datasets, message):
    path = ome_zarr_image(tmp_path / "broken.ome.zarr", planes, "cyx")
    group = zarr.open_group(path, mode="r+")
    meta = group.attrs.asdict()["ome"]
    meta["multiscales"][0]["datasets"] = datasets
    group.attrs["ome"] = meta
    with pytest.raises(InputError, match=message) as err:
        open_image(path)
    assert "broken.ome.zarr" in str(err.value) and "point to the full-resolution array" in str(err.value)


def pyramidal_tiff(path, rgb, levels=3, tile=256):
    """A pyramidal OME-TIFF as slide scanners' converters write it: level 0 tiled, sub-resolutions in SubIFDs."""
    with tifffile.TiffWriter(path, bigtiff=True) as out:
        out.write(rgb, subifds=levels - 1, tile=(tile, tile), photometric="rgb", metadata={"axes": "YXS"})
        for level in range(1, levels):
            out.write(rgb[::2 ** level, ::2 ** level], subfiletype=1, tile=(tile, tile), photometric="rgb")
    return path


def test_pyramidal_ome_tiff_is_read_at_full_resolution_window_by_window(tmp_path):
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (3072, 2048, 3), dtype=np.uint8)
    path = pyramidal_tiff(tmp_path / "slide.ome.tif", rgb)
    with tifffile.TiffFile(path) as t:
        assert len(t.series[0].levels) == 3
    tracemalloc.start()
    view, names = open_image(path)
    window = view[:, 700:956, 300:556]
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert view.shape == (3, 3072, 2048) and names == ["R", "G", "B"]
    np.testing.assert_array_equal(window, np.moveaxis(rgb[700:956, 300:556], -1, 0))
    # the window's 4 tiles of 256 px are read; a whole read would take 1-3 x nbytes
    assert peak < rgb.nbytes / 4, f"reading one window allocated {peak} bytes of a {rgb.nbytes}-byte slide"


def test_read_image_reads_all_of_it(tmp_path, planes):
    image, names = read_image(tif(tmp_path, "c.ome.tif", planes, ome=True, metadata={"axes": "CYX"}))
    assert isinstance(image, np.ndarray) and np.array_equal(image, planes) and names == ["0", "1", "2"]


# -- the model's channels ---------------------------------------------------------------------

def test_model_channels_refuse_another_count_and_warn_on_other_names(caplog):
    model = tiny_unet()
    model.channels = None
    check_model_channels(model, ["0"], "grey.tif")
    with pytest.raises(InputError, match=r"has 3 channel\(s\) \['R', 'G', 'B'\].*model.pt was trained on 1") as err:
        check_model_channels(model, ["R", "G", "B"], "he.tif")
    assert "he.tif" in str(err.value) and "set ingest.channels" in str(err.value)
    from tileunet.model import UNet
    two = UNet(in_channels=2, depth=2, base_channels=2)
    two.channels = ["DAPI", "GFP"]
    with caplog.at_level(logging.WARNING):
        check_model_channels(two, ["GFP", "DAPI"], "swapped.ome.tif", "runs/model.pt")
    assert "trained on ['DAPI', 'GFP']; they are taken in this order" in caplog.text


# -- resolution levels (predict.level) --------------------------------------------------------

def test_pyramidal_tiff_levels_and_a_missing_one(tmp_path):
    rgb = np.random.default_rng(2).integers(0, 256, (600, 520, 3), dtype=np.uint8)
    path = pyramidal_tiff(tmp_path / "slide.ome.tif", rgb, tile=128)
    for level in (1, 2):
        view, names = open_image(path, ["G"], level=level)
        np.testing.assert_array_equal(view[...], rgb[::2 ** level, ::2 ** level, 1])
    with pytest.raises(InputError, match=r"has no resolution level 3: its 3 level\(s\) are 0 \(600, 520, 3\), "
                                         r"1 \(300, 260, 3\), 2 \(150, 130, 3\)") as err:
        open_image(path, level=3)
    assert "slide.ome.tif" in str(err.value) and "set predict.level to 0..2" in str(err.value)


def test_ome_zarr_levels_and_a_missing_one(tmp_path, planes):
    path = ome_zarr_image(tmp_path / "img.ome.zarr", planes, "cyx", ["DAPI", "GFP", "RFP"])
    view, names = open_image(path, level=1)
    assert view.shape == (3, 20, 28) and names == ["DAPI", "GFP", "RFP"]
    np.testing.assert_array_equal(view[...], zarr.open_array(path / "s1", mode="r")[...])
    with pytest.raises(InputError, match=r"has no resolution level 2: its 2 level\(s\) are 0 \(3, 40, 56\), 1"):
        open_image(path, level=2)
    with pytest.raises(InputError, match="is a single array, but predict.level is 1"):
        open_image(path / "s0", level=1)
