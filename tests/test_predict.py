"""Overlap-tile inference: tiles of the network equal the whole-image pass, with and without test-time augmentation."""

import numpy as np
import pytest
import torch

from synthetic import blob_slide as slide
from synthetic import tiny_unet as tiny
from tileunet import predict
from tileunet.model import UNet
from tileunet.normalize import normalize_plane
from tileunet.tiling import chunk_slices, grid_of, plan_tiling


@pytest.fixture(scope="module")
def model():
    return tiny()


@pytest.mark.parametrize("depth, tile, shape", [
    (3, 28, (61, 45)),    # several chunks, ragged edges
    (3, 28, (9, 13)),     # smaller than one tile
    (2, 22, (50, 33)),
    (4, 28, (70, 41)),    # depth 4: output 28 is off the 8 px pooling grid, chunk 24
])
def test_tiled_equals_whole_image(depth, tile, shape):
    model = tiny(depth, base=2 if depth == 4 else 4)
    plane = normalize_plane(slide(shape)).astype(np.float32)
    ref = predict.forward_plane(model, plane)
    assert ref.shape == (1,) + shape and ref.dtype == np.float32
    tiled = predict.plane_maps(model, plane, tile, batch_size=3)
    assert tiled.dtype == np.float32
    np.testing.assert_allclose(tiled, ref, rtol=0, atol=1e-5)
    np.testing.assert_allclose(predict.predict_image(model, slide(shape)), ref[0], rtol=0, atol=1e-6)


def test_off_grid_chunks_would_differ():
    """The reason chunks are rounded to the pooling grid: a 4 px shift changes a depth-4 output."""
    model = tiny(4, base=2)
    t = plan_tiling(model, 28)
    assert (t.chunk, t.window, t.context) == (24, 28 + 2 * model.margin, model.margin)
    x = np.random.default_rng(1).random((1, 1, t.window + 4, t.window + 4)).astype(np.float32)
    a = predict._forward(model, np.ascontiguousarray(x[..., :t.window, :t.window]))[0, 1, 4:, 4:]
    b = predict._forward(model, np.ascontiguousarray(x[..., 4:, 4:]))[0, 1, :-4, :-4]
    assert np.abs(a - b).max() > 1e-3


def test_test_time_augmentation_is_tiled_exactly_and_differs(model):
    plane = normalize_plane(slide((61, 45), seed=3)).astype(np.float32)
    ref = predict.forward_plane(model, plane, tta=True)
    assert np.abs(ref - predict.forward_plane(model, plane)).max() > 1e-3  # the 8 turned copies see something else
    np.testing.assert_allclose(predict.plane_maps(model, plane, 28, tta=True), ref, rtol=0, atol=1e-5)


def test_border_class_maps_are_foreground_and_interior():
    prob = np.random.default_rng(0).dirichlet([1, 1, 1], size=(2, 5, 5)).transpose(0, 3, 1, 2)  # (B, 3, h, w)
    maps = predict.class_maps(prob)
    np.testing.assert_allclose(maps[:, 0], 1 - prob[:, 0])
    np.testing.assert_array_equal(maps[:, 1], prob[:, 1])
    assert predict.class_maps(prob[:, :2]).shape == (2, 1, 5, 5)


def test_same_padding_net_is_tiled_with_a_halo():
    torch.manual_seed(0)
    model = UNet(depth=2, base_channels=4, padding="same", dropout=0.0).eval()
    t = plan_tiling(model, 16)
    assert t.chunk == 16 and t.context == t.skip == 8 and t.window == 32
    tiled = predict.plane_maps(model, normalize_plane(slide((37, 30))).astype(np.float32), 16)
    assert tiled.shape == (1, 37, 30) and np.isfinite(tiled).all()


def test_multichannel_slide_tiled_equals_whole_image(tmp_path):
    """A 3-channel OME-TIFF read lazily window by window, normalised per channel: the whole-image pass to 1e-5."""
    import tifffile

    from tileunet.io import open_image
    model = tiny(in_channels=3)
    raw = np.stack([slide((61, 45), seed=s) // (s + 1) for s in range(3)])  # channels of other ranges
    tifffile.imwrite(tmp_path / "c.ome.tif", raw, ome=True, metadata={"axes": "CYX"})
    view, names = open_image(tmp_path / "c.ome.tif")
    ref = predict.predict_maps(model, raw)
    t = plan_tiling(model, 28)
    (lo, hi), = predict.plane_ranges(model, view)
    _, ny, nx = grid_of(raw.shape[-2:], t.chunk)
    origins = [(cy, cx) for cy in range(ny) for cx in range(nx)]
    tiled = np.zeros_like(ref)
    for (cy, cx), maps in zip(origins, predict.predict_tiles(model, view, None, origins, t, lo, hi)):
        tiled[(slice(None), *chunk_slices(raw.shape[-2:], t.chunk, 0, cy, cx))] = maps
    assert len(origins) > 3 and len(lo) == 3
    np.testing.assert_allclose(tiled, ref, rtol=0, atol=1e-5)
    assert np.abs(predict.predict_maps(model, raw[::-1]) - ref).max() > 1e-3  # the channels' order matters
    with pytest.raises(ValueError, match=r"takes 3 channel\(s\) per plane"):
        predict.predict_maps(model, raw[:2])
