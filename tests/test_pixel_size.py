import numpy as np
import pytest
import tifffile
import zarr

from tileunet.pixel_size import ngff_unit, pixel_size


@pytest.mark.parametrize("axes, metadata, expected", [
    ("ZYX", {"PhysicalSizeX": 0.65, "PhysicalSizeY": 0.65, "PhysicalSizeZ": 2.5, "PhysicalSizeZUnit": "nm"},
     {"x": (0.65, "micrometer"), "y": (0.65, "micrometer"), "z": (2.5, "nanometer")}),
    ("TYX", {"PhysicalSizeX": 0.1, "PhysicalSizeY": 0.2, "TimeIncrement": 30, "TimeIncrementUnit": "s"},
     {"x": (0.1, "micrometer"), "y": (0.2, "micrometer"), "t": (30.0, "second")}),
])
def test_ome_tiff_physical_sizes_time_increment_and_units(tmp_path, axes, metadata, expected):
    path = tmp_path / "s.ome.tif"
    tifffile.imwrite(path, np.zeros((3, 8, 8), np.uint8), ome=True, metadata={"axes": axes, **metadata})
    assert pixel_size(path) == expected


@pytest.mark.parametrize("unit, per_unit", [("CENTIMETER", 1e4 / 0.65), ("INCH", 25400 / 0.65)])
def test_tiff_resolution_tags_become_micrometres(tmp_path, unit, per_unit):
    path = tmp_path / "r.tif"
    tifffile.imwrite(path, np.zeros((8, 8), np.uint16), resolution=(per_unit, per_unit), resolutionunit=unit)
    assert pixel_size(path) == {"x": (0.65, "micrometer"), "y": (0.65, "micrometer")}


def test_imagej_tiff_unit_and_spacing(tmp_path):
    path = tmp_path / "ij.tif"
    tifffile.imwrite(path, np.zeros((2, 8, 8), np.uint8), imagej=True, resolution=(1 / 0.65, 1 / 0.65),
                     metadata={"unit": "micron", "spacing": 2.0, "axes": "ZYX"})
    assert pixel_size(path) == {"x": (0.65, "micrometer"), "y": (0.65, "micrometer"), "z": (2.0, "micrometer")}


def test_plain_tiff_declares_nothing(tmp_path):
    path = tmp_path / "p.tif"
    tifffile.imwrite(path, np.zeros((8, 8), np.uint8))  # tifffile writes resolution 1/1, unit NONE
    assert pixel_size(path) == {}


@pytest.mark.parametrize("nested", [False, True])
def test_ome_zarr_input_scale_and_units(tmp_path, nested):
    """A v0.4 image group (top-level attributes) with a global scale; or the path of its array "0"."""
    path = tmp_path / "in.ome.zarr"
    root = zarr.open_group(path, mode="w", zarr_format=2)
    root.create_array("0", shape=(4, 4), dtype="uint8")
    root.attrs["multiscales"] = [{"version": "0.4", "axes": [
        {"name": "y", "type": "space", "unit": "micrometer"}, {"name": "x", "type": "space", "unit": "micrometer"}],
        "datasets": [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [0.325, 0.325]}]}],
        "coordinateTransformations": [{"type": "scale", "scale": [2.0, 2.0]}]}]
    assert pixel_size(path / "0" if nested else path) == {"y": (0.65, "micrometer"), "x": (0.65, "micrometer")}


def test_unknown_unit_keeps_the_size_and_warns(tmp_path, caplog):
    path = tmp_path / "ij.tif"
    tifffile.imwrite(path, np.zeros((8, 8), np.uint8), imagej=True, resolution=(2.0, 2.0), metadata={"unit": "furlong"})
    assert pixel_size(path) == {"x": (0.5, None), "y": (0.5, None)}
    assert "furlong" in caplog.text and str(path) in caplog.text


def test_ngff_unit_names():
    assert ngff_unit("µm") == ngff_unit("\\u00B5m") == ngff_unit("um") == "micrometer"
    assert ngff_unit("nanometer") == "nanometer" and ngff_unit("pixel") is None
    assert ngff_unit("ms", "time") == "millisecond" and ngff_unit("ms") is None


def test_pixel_size_of_a_resolution_level(tmp_path):
    """A pyramid's level k: the TIFF's level 0 size times its subsampling, the OME-Zarr dataset's own scale."""
    from test_channels import ome_zarr_image, pyramidal_tiff
    rgb = np.zeros((256, 192, 3), np.uint8)
    path = tmp_path / "slide.ome.tif"
    with tifffile.TiffWriter(path) as out:
        out.write(rgb, subifds=1, tile=(64, 64), photometric="rgb",
                  metadata={"axes": "YXS", "PhysicalSizeX": 0.25, "PhysicalSizeY": 0.25})
        out.write(rgb[::4, ::4], subfiletype=1, tile=(64, 64), photometric="rgb")
    assert pixel_size(path) == {"x": (0.25, "micrometer"), "y": (0.25, "micrometer")}
    assert pixel_size(path, level=1) == {"x": (1.0, "micrometer"), "y": (1.0, "micrometer")}
    assert pixel_size(pyramidal_tiff(tmp_path / "plain.tif", rgb, levels=2, tile=64), level=1) == {}
    image = ome_zarr_image(tmp_path / "img.ome.zarr", np.zeros((2, 40, 56), np.uint16), "cyx")
    assert pixel_size(image) == {"x": (1.0, None), "y": (1.0, None)}  # ome-zarr-py writes no unit
    assert pixel_size(image, level=1) == {"x": (2.0, None), "y": (2.0, None)}


def test_pixel_size_of_a_bioformats2raw_store(tmp_path):
    """The store's first image, as open_image reads it: its level's scale and units."""
    from ome_zarr.writer import write_image
    image = zarr.open_group(tmp_path / "bf2raw.zarr", mode="w").create_group("0")
    write_image(np.zeros((2, 40, 56), np.uint16), image, axes="cyx", scale_factors=(2,),
                scale={"c": 1.0, "y": 0.5, "x": 0.5}, axes_units={"y": "micrometer", "x": "micrometer"})
    assert pixel_size(tmp_path / "bf2raw.zarr") == {"x": (0.5, "micrometer"), "y": (0.5, "micrometer")}
    assert pixel_size(tmp_path / "bf2raw.zarr", level=1) == {"x": (1.0, "micrometer"), "y": (1.0, "micrometer")}
