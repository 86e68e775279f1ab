"""Training tiles: mirrored windows read lazily, aligned input and output, deterministic draws."""

import numpy as np
import pytest
import torch
import zarr

from tileunet.errors import InputError
from tileunet.io import write_array
from tileunet.tiles import (IterationBatches, RandomTiles, TileReader, augmented_planes, grid_specs, planes_of,
                            validation_tiles)


def test_tile_reader_aligns_input_and_output_windows(tmp_path):
    # image = labels = weights = a ramp, so the centre of the input window must equal the label window
    ramp = np.arange(40 * 50, dtype=np.float32).reshape(1, 40, 50) + 1
    for name, dtype in (("image", np.float32), ("labels", np.int32), ("weights", np.float32)):
        write_array(tmp_path / "a.zarr" / "s", name, ramp.astype(dtype))
    zarr.open_group(tmp_path / "a.zarr", mode="a")
    reader = TileReader(augmented_planes(tmp_path / "a.zarr"), out=12, margin=8)
    for y, x in ((0, 0), (28, 38), (5, 17)):
        image, target, weights = reader.read(0, y, x)
        assert image.shape == (1, 28, 28) and target.shape == weights.shape == (12, 12)
        np.testing.assert_array_equal(image[0, 8:20, 8:20], weights)
        np.testing.assert_array_equal(weights, ramp[0, y:y + 12, x:x + 12])
        assert target.dtype == np.int64 and target.min() == 1
    # a plane smaller than the output tile: outside pixels get weight 0, the inside keeps its values
    write_array(tmp_path / "b.zarr", "image", np.ones((5, 7), np.float32))
    write_array(tmp_path / "b.zarr", "labels", np.zeros((5, 7), np.int32))
    write_array(tmp_path / "b.zarr", "weights", np.full((5, 7), 2.0, np.float32))
    image, target, weights = TileReader(planes_of(tmp_path / "b.zarr"), 12, 8).read(0, 0, 0)
    assert weights.sum() == 2.0 * 35 and (weights[:5, :7] == 2).all() and image.shape == (1, 28, 28)


def test_random_tiles_are_a_function_of_seed_and_index(training_stores):
    augmented, _ = training_stores
    reader = TileReader(augmented_planes(augmented), 12, 8)
    tiles = RandomTiles(reader, seed=3)
    specs = [tiles.spec(t) for t in range(400)]
    assert specs == [RandomTiles(reader, seed=3).spec(t) for t in range(400)]
    assert specs != [RandomTiles(reader, seed=4).spec(t) for t in range(400)]
    assert {s[0] for s in specs} == {0, 1, 2, 3}
    ys, xs = np.array([s[1] for s in specs]), np.array([s[2] for s in specs])
    assert ys.min() == 0 and ys.max() == 96 - 12 and xs.min() == 0 and xs.max() == 128 - 12  # borders are reached
    assert list(IterationBatches(2, 4, 3)) == [[6, 7, 8], [9, 10, 11]]


def test_foreground_oversampling_places_tiles_over_cells(tmp_path):
    labels = np.zeros((2, 200, 300), np.int32)
    labels[1, 150:160, 250:262] = 7  # one small cell in the second plane only
    zarr.open_group(tmp_path / "aug.zarr", mode="w", zarr_format=3)
    for name, a in (("image", labels.astype(np.float32)), ("labels", labels), ("weights", np.ones_like(labels, np.float32))):
        write_array(tmp_path / "aug.zarr" / "s", name, a)
    reader = TileReader(augmented_planes(tmp_path / "aug.zarr"), 16, 4)
    always = RandomTiles(reader, seed=0, foreground_p=1.0)
    assert all(always[t][1].sum() > 0 for t in range(50))  # every tile's target holds foreground
    uniform = RandomTiles(reader, seed=0, foreground_p=0.0)
    assert sum(uniform[t][1].sum() > 0 for t in range(50)) < 10
    half = [RandomTiles(reader, seed=0, foreground_p=0.5).spec(t) for t in range(200)]
    assert half == [RandomTiles(reader, seed=0, foreground_p=0.5).spec(t) for t in range(200)]


def test_validation_tiles_are_fixed_and_cover_the_planes(training_stores):
    _, val = training_stores
    planes = planes_of(val)
    specs = grid_specs(planes, 40)
    covered = np.zeros(planes[0].shape, bool)
    for _, y, x in specs:
        covered[y:y + 40, x:x + 40] = True
    assert covered.all()
    a, b = validation_tiles([val], 40, 8, 4), validation_tiles([val], 40, 8, 4)
    assert a[0].shape == (4, 1, 56, 56) and a[1].shape == a[2].shape == (4, 40, 40)
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert validation_tiles([val], 40, 8, 100)[0].shape[0] == len(specs) and validation_tiles([], 40, 8, 4) is None


def test_bad_stores_are_refused(tmp_path):
    write_array(tmp_path / "v.zarr", "image", np.zeros((8, 8), np.float32))
    with pytest.raises(InputError, match=r"v.zarr.*lacks the arrays \['labels', 'weights'\]"):
        planes_of(tmp_path / "v.zarr")
    zarr.open_group(tmp_path / "empty.zarr", mode="w")
    with pytest.raises(InputError, match="no sample groups"):
        augmented_planes(tmp_path / "empty.zarr")
