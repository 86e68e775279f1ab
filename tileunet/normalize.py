"""Per-plane percentile intensity normalisation, shared by training and inference.

The paper does not specify an intensity normalisation; we map the ``low`` and
``high`` percentiles of each 2D plane to 0 and 1 (no clipping), as the common
microscopy pipelines (CSBDeep, StarDist) do.  Percentiles are taken on a
deterministic strided subsample so that a slide larger than memory and the
same slide in memory give exactly the same range.
"""

import math

import numpy as np

DEFAULT_MAX_SAMPLES = 4_000_000


def sample_plane(plane, max_samples=DEFAULT_MAX_SAMPLES):
    """Deterministic strided subsample of a 2D plane.

    Parameters
    ----------
    plane : array-like, shape (Y, X)
        numpy, zarr, dask or any array supporting strided slicing.
    max_samples : int
        Upper bound on the number of pixels read.

    Returns
    -------
    numpy.ndarray, shape (ceil(Y/s), ceil(X/s)), float64
        Every s-th pixel along both axes, s = ceil(sqrt(Y*X / max_samples)).
    """
    y, x = plane.shape[-2:]
    step = max(1, math.ceil(math.sqrt(y * x / max_samples)))
    return np.asarray(plane[::step, ::step], dtype=np.float64)


def intensity_range(plane, low=1.0, high=99.8, max_samples=DEFAULT_MAX_SAMPLES):
    """Intensities at the ``low`` and ``high`` percentiles of one 2D plane.

    Parameters
    ----------
    plane : array-like, shape (Y, X)
    low, high : float
        Percentiles in [0, 100], ``low < high``.

    Returns
    -------
    (float, float)
        ``(lo, hi)`` with ``hi > lo`` (a constant plane gets ``hi = lo + 1``).
    """
    if not 0.0 <= low < high <= 100.0:
        raise ValueError(f"need 0 <= low < high <= 100 percentiles, got {low}, {high}")
    lo, hi = np.percentile(sample_plane(plane, max_samples), [low, high])
    if not hi > lo:
        hi = lo + 1.0
    return float(lo), float(hi)


def apply_range(block, lo, hi):
    """Map ``lo -> 0`` and ``hi -> 1`` linearly; float32 of ``block``'s shape.

    Computed in float64: float32 loses the range when ``hi - lo`` is small
    against the raw intensities.
    """
    return ((np.asarray(block, dtype=np.float64) - lo) / (hi - lo)).astype(np.float32)


def normalize_plane(plane, low=1.0, high=99.8):
    """Normalise one in-memory 2D plane; float32, same shape."""
    return apply_range(plane, *intensity_range(plane, low, high))
