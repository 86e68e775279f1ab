import numpy as np
import pytest
import zarr

from tileunet.io import atomic_path, write_array


def test_write_array_is_readable_with_plain_zarr(tmp_path):
    data = np.arange(20, dtype=np.float32).reshape(4, 5)
    write_array(tmp_path / "s.zarr", "image", data, attrs={"k": 1})
    g = zarr.open_group(tmp_path / "s.zarr", mode="r")
    assert np.array_equal(g["image"][...], data) and g["image"].attrs["k"] == 1


def test_failed_write_leaves_previous_output_intact(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]  # no temporary left behind


def test_successful_write_replaces_directory(tmp_path):
    target = tmp_path / "d"
    target.mkdir()
    (target / "stale").write_text("x")
    with atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "fresh").write_text("y")
    assert [p.name for p in target.iterdir()] == ["fresh"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]
