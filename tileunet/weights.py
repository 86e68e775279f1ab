"""The paper's pixel-wise loss weights (Ronneberger et al. 2015, section 3, eq. 2).

.. math::

    w(x) = w_c(x) + w_0 \\exp\\left(-\\frac{(d_1(x) + d_2(x))^2}{2\\sigma^2}\\right)

``w_c`` balances the class frequencies; ``d1``/``d2`` are the distances from
pixel ``x`` to the nearest and second-nearest cell.  The border term is what
makes the network learn the thin background gaps between touching cells.

The usual implementation runs one Euclidean distance transform per cell over
the whole image, O(cells x pixels).  Here the border term is cut where it
falls below ``tol``: it is below ``tol`` once ``d1 + d2`` exceeds
``R = sigma * sqrt(2 ln(w0 / tol))``, so every cell only needs its distance
transform inside its bounding box grown by ``R``, folded into running
nearest / second-nearest minima.  That is O(sum of box areas) time and
O(pixels) memory, and the map differs from the exact one by less than
``tol`` everywhere (:func:`weight_map`, Notes).
"""

import inspect
import math
import sys

import numpy as np
from scipy import ndimage

from .errors import InputError

BORDER_REGIONS = ("background", "all")
CLASS_BALANCES = ("inverse_frequency", "explicit", "none")
# half of the 8-neighbourhood, (dy, dx); with each pair seen from both sides it covers all 8
_HALF_NEIGHBOURHOOD = ((-1, -1), (-1, 0), (-1, 1), (0, -1))


def _check_labels(labels, ndim=2):
    """Return ``labels`` as an integer ndarray, or raise InputError naming the problem and the fix."""
    labels = np.asarray(labels)
    if labels.ndim != ndim:
        other = "weight_map_stack for (N, Y, X) stacks" if ndim == 2 else "weight_map for one (Y, X) image"
        raise InputError("labels", f"has shape {labels.shape}, expected {ndim} axes", f"pass one plane, or use {other}")
    if labels.dtype.kind == "b":
        raise InputError("labels", "is a boolean mask, not instance ids",
                         "label connected components first (tileunet.ingest.binary_to_instances)")
    if labels.dtype.kind not in "iu":
        raise InputError("labels", f"has dtype {labels.dtype}; instance ids must be integers",
                         "cast integer-valued labels with labels.astype(np.int32)")
    if labels.dtype.kind == "i" and labels.size and labels.min() < 0:
        raise InputError("labels", "has negative ids", "use 0 for background and positive ids for cells")
    return labels


def _check_pair(values, name, allow_zero=True):
    values = np.asarray(values, dtype=float)
    if values.shape != (2,) or not np.isfinite(values).all() or (values < 0).any() or (not allow_zero and (values == 0).any()):
        need = "non-negative" if allow_zero else "positive"
        raise InputError(name, f"is {values.tolist()}, expected two finite {need} numbers",
                         f"give {name} as [background, foreground]" if name != "spacing" else "give spacing as [y, x]")
    return values


def _check_params(w0, sigma, tol, border_region, class_balance):
    for name, value, positive in (("w0", w0, False), ("sigma", sigma, True), ("tol", tol, True)):
        if not math.isfinite(value) or value < 0 or (positive and value == 0):
            need = "positive" if positive else "non-negative"
            raise InputError(name, f"is {value}, expected a finite {need} number", f"set weights.{name} to a {need} value")
    if border_region not in BORDER_REGIONS:
        raise InputError("border_region", f"is {border_region!r}", f"use one of {', '.join(BORDER_REGIONS)}")
    if class_balance not in CLASS_BALANCES:
        raise InputError("class_balance", f"is {class_balance!r}", f"use one of {', '.join(CLASS_BALANCES)}")


def cutoff_radius(w0, sigma, tol):
    """Distance ``d1 + d2`` beyond which the border term is below ``tol``.

    Returns
    -------
    float
        ``sigma * sqrt(2 ln(w0 / tol))`` in the units of ``sigma``; ``-inf``
        when ``w0 <= tol`` (the whole term is then below ``tol``).
    """
    if w0 <= tol:
        return -math.inf
    return sigma * math.sqrt(2.0 * math.log(w0 / tol))


def class_frequencies(label_arrays):
    """Background and foreground pixel fractions over many label images.

    Parameters
    ----------
    label_arrays : iterable of array-like
        Instance-label images (0 = background) of any shape; zarr arrays are
        read one leading-axis plane at a time.

    Returns
    -------
    list of float
        ``[background_fraction, foreground_fraction]``, summing to 1.

    Examples
    --------
    >>> class_frequencies([np.array([[0, 1], [0, 0]]), np.array([[2, 2]])])
    [0.5, 0.5]
    """
    background = total = 0
    for arr in label_arrays:
        planes = [arr] if np.ndim(arr) <= 2 else (arr[i] for i in range(arr.shape[0]))
        for plane in planes:
            plane = np.asarray(plane)
            background += int(np.count_nonzero(plane == 0))
            total += plane.size
    if total == 0:
        raise InputError("label_arrays", "hold no pixels", "pass at least one non-empty label image")
    return [background / total, (total - background) / total]


def class_weights_map(labels, class_balance="inverse_frequency", class_weights=None, frequencies=None):
    """The class-balance term ``w_c`` of eq. 2 (section 3), float32, same shape as ``labels``.

    Parameters
    ----------
    labels : ndarray of int, shape (Y, X)
        Instance ids, 0 = background.
    class_balance : {"inverse_frequency", "explicit", "none"}
        ``inverse_frequency``: ``w_c = f_max / f_c``, so the most frequent class
        weighs 1 (the paper does not give its formula).  ``explicit``:
        ``class_weights``.  ``none``: 1 everywhere.
    class_weights : sequence of 2 float, optional
        ``[background, foreground]``; required for ``explicit``.
    frequencies : sequence of 2 float, optional
        ``[background, foreground]`` frequencies (e.g. over the training set,
        :func:`class_frequencies`); default: this image's.  A class of
        frequency 0 weighs 1.

    Returns
    -------
    ndarray of float32, shape (Y, X)
    """
    if class_balance == "none":
        per_class = np.ones(2)
    elif class_balance == "explicit":
        if class_weights is None:
            raise InputError("class_weights", "is missing for class_balance explicit",
                             "give class_weights as [background, foreground]")
        per_class = _check_pair(class_weights, "class_weights")
    else:
        if frequencies is None:
            fg = np.count_nonzero(labels) / max(labels.size, 1)
            frequencies = [1.0 - fg, fg]
        freq = _check_pair(frequencies, "frequencies")
        if freq.sum() == 0:
            raise InputError("frequencies", "are both 0", "give class frequencies as [background, foreground] fractions")
        per_class = np.where(freq > 0, freq.max() / np.where(freq > 0, freq, 1.0), 1.0)
    return np.where(labels > 0, np.float32(per_class[1]), np.float32(per_class[0])).astype(np.float32)


def _sequential(labels):
    """Labels as intp with ids small enough for find_objects (relabelled only when ids are sparse and huge)."""
    top = int(labels.max()) if labels.size else 0
    if top > labels.size:
        ids, inverse = np.unique(labels, return_inverse=True)
        return (inverse.reshape(labels.shape) + (ids[0] != 0)).astype(np.intp)  # 0 stays background
    return labels.astype(np.intp, copy=False)


def two_nearest(labels, spacing=(1.0, 1.0), radius=math.inf):
    """Distances to the nearest and second-nearest cell, exact up to ``radius``.

    Parameters
    ----------
    labels : ndarray of int, shape (Y, X)
        Instance ids, 0 = background.
    spacing : sequence of 2 float
        Pixel size (Y, X) in the units of the returned distances.
    radius : float
        Distances are exact where ``d1 + d2 <= radius``; beyond it they may
        be overestimated (``inf``), never underestimated.

    Returns
    -------
    d1, d2 : ndarray of float32, shape (Y, X)
        Euclidean distance to the nearest pixel of the nearest and of the
        second-nearest cell (0 inside a cell for ``d1``); ``inf`` where fewer
        cells are within reach.

    Notes
    -----
    Per cell, the feature transform (nearest cell pixel) runs on the cell's
    bounding box grown by ``radius`` (per axis, in pixels of that axis);
    outside it the cell is farther than ``radius``.  Every pixel of the cell
    lies in its box, so the box's transform is exact.  Squared distances are
    folded into running minima, ``d2 <- min(d2, max(d1, d)); d1 <- min(d1, d)``
    (the two smallest, as a sort would give), and rooted once at the end.
    """
    sy, sx = (float(s) for s in spacing)
    lab = _sequential(labels)
    sq1 = np.full(lab.shape, np.inf, np.float32)
    sq2 = np.full(lab.shape, np.inf, np.float32)
    if math.isinf(radius):
        pad = lab.shape
    else:
        pad = tuple(int(math.ceil(max(radius, 0.0) / s)) for s in (sy, sx))
    rows = np.arange(lab.shape[0], dtype=np.int32)[:, None]
    cols = np.arange(lab.shape[1], dtype=np.int32)
    for i, box in enumerate(ndimage.find_objects(lab), start=1):
        if box is None:
            continue
        grown = tuple(slice(max(b.start - p, 0), min(b.stop + p, n)) for b, p, n in zip(box, pad, lab.shape))
        sq = _squared_distance(lab[grown] != i, sy, sx, rows, cols)
        near, second = sq1[grown], sq2[grown]
        np.minimum(second, np.maximum(near, sq), out=second)
        np.minimum(near, sq, out=near)
    return np.sqrt(sq1, out=sq1), np.sqrt(sq2, out=sq2)


def _squared_distance(mask, sy, sx, rows, cols):
    """Squared Euclidean distance (float32) from each pixel of ``mask`` to its nearest False pixel.

    ``rows``/``cols`` are int32 aranges at least as long as the mask's axes.
    """
    # the feature transform alone; squaring here spares scipy's float64 distance pass
    sampling = None if sy == sx == 1.0 else (sy, sx)
    ft = ndimage.distance_transform_edt(mask, sampling=sampling, return_distances=False, return_indices=True)
    dy, dx = ft
    dy -= rows[: mask.shape[0]]
    dx -= cols[: mask.shape[1]]
    sq = np.square(dy, dtype=np.float32)
    dx = np.square(dx, dtype=np.float32)
    if sy != 1.0:
        sq *= np.float32(sy * sy)
    if sx != 1.0:
        dx *= np.float32(sx * sx)
    sq += dx
    return sq


def weight_map(labels, w0=10.0, sigma=5.0, tol=1e-4, spacing=(1.0, 1.0), border_region="background",
               class_balance="inverse_frequency", class_weights=None, frequencies=None, border_term=True):
    """The paper's weight map for one 2D instance-label image (section 3, eq. 2).

    Parameters
    ----------
    labels : ndarray of int, shape (Y, X)
        Non-negative instance ids, 0 = background; ids need not be
        contiguous.  Binary masks must be split into components first.
    w0 : float
        Amplitude of the border term (paper: 10).
    sigma : float
        Width of the border term, in the units of ``spacing`` (paper: ~5 px).
    tol : float
        Border-term values below ``tol`` are dropped; the map differs from the
        exact one by less than ``tol`` everywhere.
    spacing : sequence of 2 float
        Pixel size (Y, X) for the distances, in the units of ``sigma``.
    border_region : {"background", "all"}
        Where the border term applies: background pixels only (the gaps
        between cells, the paper's intent), or every pixel (inside a cell
        ``d1 = 0`` and ``d2`` is the distance to the nearest other cell).
    class_balance, class_weights, frequencies
        The class-balance term, see :func:`class_weights_map`.
    border_term : bool
        False leaves ``w_c`` only (ablation).

    Returns
    -------
    ndarray of float32, shape (Y, X)

    Raises
    ------
    InputError
        Labels not 2D, not integer, negative or boolean; parameters out of range.

    Notes
    -----
    ``d1``, ``d2`` are Euclidean distances from a pixel to the nearest pixel of
    the nearest and second-nearest cell.  The border term is 0 where fewer than
    two cells exist, and an all-background image gets ``w_c`` only.  Where
    ``d1 + d2 > R = sigma sqrt(2 ln(w0 / tol))`` the term (< ``tol``) is set
    to 0, so the error against the exact map is below ``tol``
    (default 1e-4, plus float32 rounding).

    References
    ----------
    O. Ronneberger, P. Fischer, T. Brox. U-Net: Convolutional Networks for
    Biomedical Image Segmentation. MICCAI 2015, arXiv:1505.04597, eq. 2.

    Examples
    --------
    Two one-pixel cells four pixels apart; the midpoint has d1 = d2 = 2:

    >>> labels = np.zeros((1, 9), int); labels[0, 2] = 1; labels[0, 6] = 2
    >>> w = weight_map(labels, class_balance="none")
    >>> round(float(w[0, 4]), 4), round(1 + 10 * math.exp(-16 / 50), 4)
    (8.2615, 8.2615)
    """
    labels = _check_labels(labels)
    _check_params(w0, sigma, tol, border_region, class_balance)
    spacing = _check_pair(spacing, "spacing", allow_zero=False)
    weights = class_weights_map(labels, class_balance, class_weights, frequencies)
    radius = cutoff_radius(w0, sigma, tol)
    if not border_term or radius < 0 or labels.size == 0:
        return weights
    d1, d2 = two_nearest(labels, spacing, radius)
    total = d1 + d2  # inf where fewer than two cells are within reach
    where = total <= radius
    if border_region == "background":
        where &= labels == 0
    weights[where] += (w0 * np.exp(-np.square(total[where], dtype=np.float64) / (2.0 * sigma**2))).astype(np.float32)
    return weights


def weight_map_stack(labels, progress=False, **kwargs):
    """:func:`weight_map` for each plane of a (N, Y, X) stack; float32, same shape.

    ``progress=True`` shows a tqdm bar on stderr.  Other keyword arguments go
    to :func:`weight_map`.
    """
    labels = _check_labels(labels, ndim=3)
    planes = labels
    if progress:
        from tqdm import tqdm

        planes = tqdm(labels, desc="weight maps", unit="plane", file=sys.stderr)
    out = np.empty(labels.shape, np.float32)
    for i, plane in enumerate(planes):
        out[i] = weight_map(plane, **kwargs)
    return out


def separate_touching(labels):
    """Carve a 1-pixel background gap where two instances touch (8-connectivity).

    Of two touching cells, the one with the smaller id loses the pixels that
    touch the other, so every border becomes a 1-pixel background gap that
    the border term of the weight map can weight.  The authors' U-Net plugin
    (Falk et al. 2019) carves the same way but tests only the four
    neighbours that precede a pixel in raster order, which leaves 2-pixel
    gaps along vertical borders; ordering by id instead gives 1-pixel gaps
    in every orientation.

    Parameters
    ----------
    labels : ndarray of int, shape (Y, X) or (N, Y, X)
        Instance ids, 0 = background; stacks are handled plane by plane.

    Returns
    -------
    ndarray
        A copy, same dtype and shape, in which no two different cells are
        8-adjacent; pixels are only set to 0, never relabelled.  Labels that
        are already separated come back unchanged (idempotent).  A cell can
        lose all its pixels (e.g. a 1-pixel cell beside a larger id).

    Examples
    --------
    >>> separate_touching(np.array([[1, 1, 2, 2]]))
    array([[1, 0, 2, 2]])
    """
    labels = np.asarray(labels)
    if labels.ndim not in (2, 3):
        raise InputError("labels", f"has shape {labels.shape}", "pass a (Y, X) image or a (N, Y, X) stack")
    lab = labels if labels.ndim == 3 else labels[None]
    carve = np.zeros(lab.shape, bool)
    ny, nx = lab.shape[1:]
    for dy, dx in _HALF_NEIGHBOURHOOD:
        # pixel (y, x) against its neighbour (y + dy, x + dx), both inside the image; the reverse
        # direction covers the other four neighbours
        here = (slice(None), slice(-dy, ny), slice(max(-dx, 0), nx - max(dx, 0)))
        there = (slice(None), slice(0, ny + dy), slice(max(dx, 0), nx + min(dx, 0)))
        a, b = lab[here], lab[there]
        carve[here] |= (a > 0) & (b > a)
        carve[there] |= (b > 0) & (a > b)
    out = lab.copy()
    out[carve] = 0
    return out if labels.ndim == 3 else out[0]


def weight_kwargs(cfg, frequencies=None):
    """Every :func:`weight_map` keyword argument, from the config's ``weights`` section.

    Parameters
    ----------
    cfg : dict
        Keys ``w0, sigma, tol, border_region, class_balance, class_weights,
        frequency_scope, spacing, border_term``; missing keys take
        :func:`weight_map`'s defaults, other keys are ignored.
    frequencies : sequence of 2 float, optional
        Dataset ``[background, foreground]`` frequencies
        (:func:`class_frequencies`), required when ``frequency_scope`` is
        ``dataset``.

    Returns
    -------
    dict
        JSON-serialisable; ``class_weights`` is set only for ``explicit``,
        ``frequencies`` only for dataset scope (otherwise None).
    """
    defaults = {k: v.default for k, v in inspect.signature(weight_map).parameters.items() if k != "labels"}
    kwargs = {**defaults, **{k: cfg[k] for k in defaults if k in cfg}}
    kwargs["spacing"] = [float(s) for s in kwargs["spacing"]]
    if kwargs["class_balance"] != "explicit":
        kwargs["class_weights"] = None
    kwargs["frequencies"] = None
    if cfg.get("frequency_scope", "image") == "dataset":
        if frequencies is None:
            raise InputError("weights.frequency_scope", "is dataset but no dataset frequencies were given",
                             "compute them with class_frequencies over the training labels")
        kwargs["frequencies"] = [float(f) for f in frequencies]
    return kwargs
