"""The geometry of an augmented copy: one sampling grid per copy, and the warps that use it (section 3.1).

One copy is one output pixel grid ``p = (y, x)`` sampled at the source
coordinates

.. math::

    q(p) = c + A\\,(p - c) + t + d(p), \\qquad A = R(\\theta)\\,F / s,

with ``c`` the image centre, ``R`` a rotation, ``F`` the flips, ``s`` an
isotropic scale (``s > 1`` magnifies), ``t`` a shift and ``d`` the elastic
displacement, in source pixels.  ``d`` is the coarse grid upsampled by cubic
spline interpolation (``scipy.ndimage.zoom(order=3)``, as elasticdeform does),
which is separable: ``d = W_y G W_x^T`` with ``W`` of shape (n, grid).  So the
whole coordinate map is one rank-``grid + 2`` matrix product, and every output
pixel is interpolated exactly once: the image with bicubic convolution
(``torch.nn.functional.grid_sample``, Keys' kernel, a = -0.75), the labels with
nearest neighbour (a copy of a source pixel, so no id is ever invented), the
weights bilinearly when interpolated.  Borders are mirrored without repeating
the edge pixel (``numpy.pad(mode="reflect")``, scipy's ``mirror``), as in
overlap-tile.  By default the weights of a copy are recomputed from its labels
with :func:`tileunet.weights.weight_map`.
"""

import functools

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

# float32 holds every integer below 2**24 exactly; larger ids go through float64
_FLOAT32_EXACT = 2**24


@functools.lru_cache(maxsize=16)
def upsampling_matrix(n, points):
    """Cubic-spline upsampling of ``points`` control values to ``n`` pixels, float64 (n, points).

    Column ``j`` is ``scipy.ndimage.zoom(order=3)`` of the ``j``-th unit
    vector, so ``W @ g == zoom(g, n / points, order=3)`` for any ``g``;
    control points sit at pixels ``0, (n - 1) / (points - 1), ..., n - 1``.
    Being linear and separable, zoom of a 2D grid ``G`` is ``W_y G W_x^T``.
    """
    w = ndimage.zoom(np.eye(points), (n / points, 1), order=3)
    w.setflags(write=False)
    return w


def displacement_field(elastic, shape):
    """Per-pixel elastic displacement ``d`` (2, Y, X), float64, source pixels.

    The paper's bicubic interpolation of the coarse grid, equal to
    ``scipy.ndimage.zoom(grid, (Y / g, X / g), order=3)`` per component.
    """
    grid = np.asarray(elastic, dtype=np.float64)
    wy, wx = upsampling_matrix(shape[0], grid.shape[1]), upsampling_matrix(shape[1], grid.shape[2])
    return np.stack([wy @ g @ wx.T for g in grid])


def sampling_grid(transform, shape):
    """The source coordinates ``q(p)`` of every output pixel, as ``grid_sample`` wants them.

    Parameters
    ----------
    transform : Transform
    shape : (int, int)
        (Y, X) of the source and of the output, each >= 2.

    Returns
    -------
    torch.Tensor of float32, shape (1, Y, X, 2)
        (x, y) normalised so that -1 and 1 are the centres of the first and
        last pixels (``align_corners=True``).

    Notes
    -----
    Per source axis ``a``, ``q_a = L K_a R^T`` with the left basis
    ``L = [W_y, y, 1]`` (Y, g + 2), the right basis ``R = [W_x, x, 1]``
    (X, g + 2) and a small ``K_a`` holding the grid, the affine part and the
    normalisation: one float32 matrix product yields the whole interleaved grid.
    """
    ny, nx = shape
    amat = transform.matrix()
    centre = np.array([(ny - 1) / 2, (nx - 1) / 2])
    offset = centre - amat @ centre + np.asarray(transform.shift, dtype=np.float64)
    g = 0 if transform.elastic is None else len(transform.elastic[0])
    yb, xb = np.arange(ny, dtype=np.float64), np.arange(nx, dtype=np.float64)
    left = np.column_stack(([upsampling_matrix(ny, g)] if g else []) + [yb, np.ones(ny)])
    right = np.column_stack(([upsampling_matrix(nx, g)] if g else []) + [xb, np.ones(nx)])
    kernels = []
    for a, size in ((1, nx), (0, ny)):  # grid_sample's last axis is (x, y)
        k = np.zeros((g + 2, g + 2))
        if g:
            k[:g, :g] = transform.elastic[a]
        k[g, g + 1], k[g + 1, g], k[g + 1, g + 1] = amat[a, 0], amat[a, 1], offset[a]
        k *= 2.0 / (size - 1)
        k[g + 1, g + 1] -= 1.0
        kernels.append(k @ right.T)  # (g + 2, X)
    rhs = torch.from_numpy(np.stack(kernels, axis=-1).reshape(g + 2, 2 * nx).astype(np.float32))
    return (torch.from_numpy(left.astype(np.float32)) @ rhs).view(1, ny, nx, 2)


def _sample(array, grid, mode):
    """``grid_sample`` of one 2D array with mirrored borders; returns a (Y, X) tensor."""
    return F.grid_sample(array[None, None], grid, mode=mode, padding_mode="reflection", align_corners=True)[0, 0]


def warp_image(image, grid):
    """Bicubic (Keys, a = -0.75) resampling of a float32 (Y, X) image, or of every channel of a (C, Y, X) one, at ``grid``."""
    x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))
    if x.ndim == 2:
        return _sample(x, grid, "bicubic").numpy()
    return F.grid_sample(x[None], grid, mode="bicubic", padding_mode="reflection", align_corners=True)[0].numpy()


def warp_weights(weights, grid):
    """Bilinear resampling of a weight map: never below its minimum nor above its maximum."""
    return _sample(torch.from_numpy(np.ascontiguousarray(weights, dtype=np.float32)), grid, "bilinear").numpy()


def warp_labels(labels, grid):
    """Nearest-neighbour resampling of instance labels, int32 (Y, X).

    Every output pixel is a copy of one source pixel, so the output ids are a
    subset of the input's.  The ids pass through a float type that holds
    them exactly (float32 below 2**24, float64 above).
    """
    labels = np.asarray(labels)
    dtype = torch.float32 if labels.size == 0 or int(labels.max()) < _FLOAT32_EXACT else torch.float64
    lab = torch.from_numpy(np.ascontiguousarray(labels)).to(dtype)
    return _sample(lab, grid.to(dtype), "nearest").numpy().astype(np.int32)
