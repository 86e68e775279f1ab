"""The tiling vocabulary: mirrored windows, the network's tile plan, the chunk grid and halo windows."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from synthetic import tiny_unet
from tileunet.model import UNet
from tileunet.tiling import bands, chunk_slices, grid_of, halo_window, input_window, mirror_index, plan_tiling, read_window


@pytest.fixture(scope="module")
def model():
    return tiny_unet()


@settings(max_examples=50, deadline=None)
@given(n=st.integers(1, 9), start=st.integers(-25, 9), length=st.integers(1, 30),
       mode=st.sampled_from(["symmetric", "reflect"]))
def test_mirror_index_equals_numpy_pad(n, start, length, mode):
    if mode == "reflect" and n == 1:
        mode = "symmetric"  # numpy's reflect of one pixel is that pixel too; both give zeros
    pad = 40
    padded = np.pad(np.arange(n), pad, mode=mode)
    assert mirror_index(start, start + length, n, mode).tolist() == padded[pad + start:pad + start + length].tolist()


class _Recording:
    """An array that records the boxes read from it."""

    def __init__(self, data):
        self.data, self.shape, self.reads = data, data.shape, []

    def __getitem__(self, key):
        self.reads.append(key)
        return self.data[key]


@settings(max_examples=30, deadline=None)
@given(y0=st.integers(-20, 30), x0=st.integers(-20, 30), h=st.integers(1, 24), w=st.integers(1, 24))
def test_read_window_mirrors_and_reads_only_the_box(y0, x0, h, w):
    data = np.arange(3 * 17 * 23).reshape(3, 17, 23)
    arr = _Recording(data)
    got = read_window(arr, 1, y0, x0, h, w)
    padded = np.pad(data[1], 50, mode="symmetric")
    np.testing.assert_array_equal(got, padded[50 + y0:50 + y0 + h, 50 + x0:50 + x0 + w])
    (key,) = arr.reads
    assert key[0] == 1 and (key[1].stop - key[1].start) <= min(h, 17) and (key[2].stop - key[2].start) <= min(w, 23)


@pytest.mark.parametrize("shape", [(5, 7), (40, 33)])
def test_mirrored_windows_equal_numpy_symmetric_padding(model, shape):
    image = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    t = plan_tiling(model, 28)
    big = 3 * t.window
    padded = np.pad(image, big, mode="symmetric")
    ny, nx = -(-shape[0] // t.chunk), -(-shape[1] // t.chunk)
    for cy, cx in {(0, 0), (ny - 1, nx - 1), (0, nx - 1)}:
        y0, x0 = cy * t.chunk - t.context + big, cx * t.chunk - t.context + big
        np.testing.assert_array_equal(input_window(image, None, cy, cx, t),
                                      padded[None, y0:y0 + t.window, x0:x0 + t.window])


def test_bad_tiles_name_the_fix(model):
    with pytest.raises(ValueError, match=r"predict.tile to one of .*28"):
        plan_tiling(model, 30)
    with pytest.raises(ValueError, match="multiple of 4"):
        plan_tiling(UNet(depth=3, base_channels=2, padding="same"), 30)
    with pytest.raises(ValueError, match="at least 12"):
        plan_tiling(UNet(depth=4, base_channels=2), 4)  # valid output, but chunk 4 - 4 % 8 = 0


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 60), st.integers(1, 60), st.integers(1, 17), st.integers(0, 30))
def test_chunks_tile_the_plane_and_halo_windows_hold_their_chunk(h, w, chunk, halo):
    n, ny, nx = grid_of((2, h, w), chunk)
    covered = np.zeros((2, h, w), int)
    for p in range(n):
        for cy in range(ny):
            for cx in range(nx):
                covered[chunk_slices((2, h, w), chunk, p, cy, cx)] += 1
                window, core = halo_window((h, w), chunk, cy, cx, halo)
                box = chunk_slices((h, w), chunk, None, cy, cx)
                for axis, (win, c, b) in enumerate(zip(window, core, box)):
                    assert 0 <= win.start and win.stop <= (h, w)[axis]
                    assert win.start + c.start == b.start and win.start + c.stop == b.stop
                    assert b.start - win.start == min(halo, b.start)
    assert (covered == 1).all()
    parts = bands(ny, min(3, ny))
    assert parts[0][0] == 0 and parts[-1][1] == ny and all(a[1] == b[0] for a, b in zip(parts, parts[1:]))
