"""Label surgery: the 1-pixel gaps carved between touching cells."""

import numpy as np
from hypothesis import given, settings

from test_weights import label_images
from tileunet.labels import separate_touching


def smaller_id_carved(labels):
    """Pixel by pixel: a cell pixel with an 8-neighbour of a larger cell id becomes 0."""
    out = labels.copy()
    ny, nx = labels.shape
    for y in range(ny):
        for x in range(nx):
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    v, u = y + dy, x + dx
                    if 0 <= v < ny and 0 <= u < nx and 0 < labels[y, x] < labels[v, u]:
                        out[y, x] = 0
    return out


def touching_pairs(labels):
    """Number of 8-adjacent pixel pairs with different non-zero ids."""
    n = 0
    for dy, dx in ((0, 1), (1, 0), (1, 1), (1, -1)):
        a = labels[max(-dy, 0):labels.shape[0] - max(dy, 0), max(-dx, 0):labels.shape[1] - max(dx, 0)]
        b = labels[max(dy, 0):, max(dx, 0):][: a.shape[0], : a.shape[1]]
        n += int(((a > 0) & (b > 0) & (a != b)).sum())
    return n


def test_separate_touching_hand_computed():
    labels = np.array([[1, 1, 2, 2],
                       [1, 1, 2, 2],
                       [3, 3, 0, 2]])
    expected = np.array([[1, 0, 2, 2],
                         [0, 0, 0, 2],
                         [3, 3, 0, 2]])
    assert np.array_equal(separate_touching(labels), expected)
    assert np.array_equal(separate_touching(labels[None])[0], expected)


@settings(max_examples=60, deadline=None)
@given(labels=label_images(max_side=12))
def test_separate_touching_properties(labels):
    out = separate_touching(labels)
    assert out.dtype == labels.dtype and out.shape == labels.shape
    assert np.array_equal(out, smaller_id_carved(labels))
    assert touching_pairs(out) == 0
    assert ((out == labels) | (out == 0)).all()  # only carves, never relabels
    assert np.array_equal(separate_touching(out), out)  # idempotent
    assert np.array_equal(labels, labels.copy())  # input untouched


def test_separate_touching_gap_is_one_pixel():
    labels = np.zeros((6, 10), np.int32)
    labels[:, :5], labels[:, 5:] = 1, 2
    out = separate_touching(labels)
    assert (out[:, 4] == 0).all() and (out[:, :4] == 1).all() and (out[:, 5:] == 2).all()
    assert np.array_equal(separate_touching(labels.T), out.T)  # same gap whatever the border's orientation


# ---------------------------------------------------------------- class frequencies and config
