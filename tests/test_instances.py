"""Chunked instance labelling equals whole-array labelling (up to renumbering)."""

import numpy as np
from hypothesis import given, settings, strategies as st
from scipy import ndimage

from tileunet import instances


def chunked(mask, chunk, min_size=0):
    """Run label_chunked over a 2D or 3D in-memory mask cut into chunk x chunk blocks."""
    stack = mask if mask.ndim == 3 else mask[None]
    out = np.zeros(stack.shape, np.int32)
    grid = (stack.shape[0], -(-stack.shape[1] // chunk), -(-stack.shape[2] // chunk))

    def box(cy, cx):
        return slice(cy * chunk, (cy + 1) * chunk), slice(cx * chunk, (cx + 1) * chunk)

    def write(p, cy, cx, lab):
        out[(p, *box(cy, cx))] = lab

    n = instances.label_chunked(lambda p, cy, cx: stack[(p, *box(cy, cx))], write, grid, min_size)
    return (out if mask.ndim == 3 else out[0]), n


def same_partition(a, b):
    """True when a and b are the same labelling up to a bijective renumbering (0 fixed)."""
    if not np.array_equal(a > 0, b > 0):
        return False
    pairs = np.unique(np.stack([a[a > 0], b[b > 0]], 1), axis=0)
    return len(pairs) == len(np.unique(pairs[:, 0])) == len(np.unique(pairs[:, 1]))


def test_a_cell_crossing_chunk_borders_gets_one_id():
    # A U whose two arms meet only in the chunk row below: joined through a third chunk.
    mask = np.zeros((12, 12), bool)
    mask[1:10, 4] = mask[1:10, 7] = True  # arms in chunks (0,0)/(0,1) and (1,0)/(1,1) at chunk 6
    mask[9, 4:8] = True
    mask[2, 10:12] = True  # a second cell
    out, n = chunked(mask, 6)
    assert n == 2
    assert np.unique(out[1:10, [4, 7]]).tolist() == [1]
    assert out[2, 10] == out[2, 11] == 2


def test_ids_follow_first_appearance_and_planes_are_separate():
    mask = np.zeros((2, 4, 4), bool)
    mask[:, 1:3, 1:3] = True  # the same square in both planes: two instances
    out, n = chunked(mask, 2)
    assert n == 2 and out[0, 1, 1] == 1 and out[1, 1, 1] == 2


def test_face_pairs_and_diagonal_contact_stays_apart():
    # 4-connectivity as scipy.ndimage.label's default: diagonal neighbours are two cells
    mask = np.zeros((4, 4), bool)
    mask[1, 1] = mask[2, 2] = True
    out, n = chunked(mask, 2)
    assert n == 2 and out[1, 1] != out[2, 2]


def test_min_size_counts_pixels_over_all_chunks():
    mask = np.zeros((6, 6), bool)
    mask[2, 0:6] = True  # 6 px across three chunks
    mask[5, 5] = True  # 1 px
    out, n = chunked(mask, 2, min_size=3)
    assert n == 1 and out[2].tolist() == [1] * 6 and out[5, 5] == 0


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 40), st.integers(1, 40), st.integers(1, 9), st.floats(0.3, 0.7), st.integers(0, 2**31 - 1),
       st.integers(0, 6))
def test_chunked_equals_whole_array_labelling(h, w, chunk, density, seed, min_size):
    mask = np.random.default_rng(seed).random((h, w)) < density
    out, n = chunked(mask, chunk, min_size)
    ref, _ = ndimage.label(mask)
    sizes = np.bincount(ref.ravel())
    ref = np.where(sizes[ref] >= max(min_size, 1), ref, 0) * (ref > 0)
    assert same_partition(out, ref)
    assert n == len(np.unique(ref[ref > 0])) and out.max() == n
