"""The paper's pixel-wise loss weights (Ronneberger et al. 2015, section 3, eq. 2).

.. math::

    w(x) = w_c(x) + w_0 \\exp\\left(-\\frac{(d_1(x) + d_2(x))^2}{2\\sigma^2}\\right)

``w_c`` balances the class frequencies; ``d1``/``d2`` are the distances from
pixel ``x`` to the nearest and second-nearest cell.  The border term is what
makes the network learn the thin background gaps between touching cells.

The usual implementation runs one Euclidean distance transform per cell over
the whole image, O(cells x pixels).  Here one exact separable transform finds
the two nearest *distinct* cells of every pixel (:func:`two_nearest`,
compiled with numba), and the border term is cut where it falls below
``tol``: it is below ``tol`` once ``d1 + d2`` exceeds
``R = sigma * sqrt(2 ln(w0 / tol))``, which bounds each pixel's search.
That is O(pixels x R) time, independent of the number of cells, and the map
differs from the exact one by less than ``tol`` everywhere
(:func:`weight_map`, Notes).
"""

import inspect
import math
import sys

import numba
import numpy as np

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


def _compact(labels):
    """Labels as C-contiguous int32, relabelled sequentially (0 stays background) only when ids exceed int32."""
    top = int(labels.max()) if labels.size else 0
    if top >= 2**31:
        ids, inverse = np.unique(labels, return_inverse=True)
        labels = inverse.reshape(labels.shape) + (ids[0] != 0)
    return np.ascontiguousarray(labels, dtype=np.int32)


@numba.njit(cache=True, nogil=True)
def _keep_two(d, l, b1, l1, b2, l2):
    """Fold candidate (distance ``d``, cell ``l``) into the two nearest distinct cells (b1, l1) <= (b2, l2)."""
    if l == l1:
        if d < b1:
            b1 = d
    elif d < b1:
        b2, l2 = b1, l1
        b1, l1 = d, l
    elif d < b2:
        b2, l2 = d, l
    return b1, l1, b2, l2


@numba.njit(cache=True, nogil=True)
def _column_candidates(lab, sy, reach):
    """Per pixel, the nearest two distinct cells within its own column, up to ``reach`` away.

    Returns ``h1, c1, h2, c2`` of shape (Y, X): squared vertical distances
    (float32, ``inf``: none) and ids (int32, 0: none) of the nearest cell
    pixel of the column and of the nearest pixel of another cell.  Cells
    farther than ``reach`` are left out: they cannot be part of a pair with
    ``d1 + d2 <= reach``.  Raster order, all columns at once, so memory is
    read contiguously.
    """
    ny, nx = lab.shape
    sy2 = sy * sy
    reach2 = reach * reach
    h1 = np.full((ny, nx), np.inf, np.float32)
    c1 = np.zeros((ny, nx), np.int32)
    h2 = np.full((ny, nx), np.inf, np.float32)
    c2 = np.zeros((ny, nx), np.int32)
    # the last cell pixel seen in each column, and the last one of a different cell before it
    last_y = np.full(nx, -1, np.int64)
    last_c = np.zeros(nx, np.int32)
    prev_y = np.full(nx, -1, np.int64)
    prev_c = np.zeros(nx, np.int32)
    for y in range(ny):  # downwards: cells at or above y
        for x in range(nx):
            c = lab[y, x]
            if c != 0:
                if c != last_c[x]:
                    prev_y[x], prev_c[x] = last_y[x], last_c[x]
                last_y[x], last_c[x] = y, c
            if last_y[x] >= 0:
                dy = float(y - last_y[x])
                if sy2 * dy * dy <= reach2:
                    h1[y, x], c1[y, x] = sy2 * dy * dy, last_c[x]
            if prev_y[x] >= 0:
                dy = float(y - prev_y[x])
                if sy2 * dy * dy <= reach2:
                    h2[y, x], c2[y, x] = sy2 * dy * dy, prev_c[x]
    last_y[:] = -1
    last_c[:] = 0
    prev_y[:] = -1
    prev_c[:] = 0
    for y in range(ny - 1, -1, -1):  # upwards: cells at or below y, merged with those above
        for x in range(nx):
            c = lab[y, x]
            if c != 0:
                if c != last_c[x]:
                    prev_y[x], prev_c[x] = last_y[x], last_c[x]
                last_y[x], last_c[x] = y, c
            if last_y[x] < 0:
                continue
            dy = float(last_y[x] - y)
            if sy2 * dy * dy > reach2:
                continue
            b1, l1, b2, l2 = h1[y, x], c1[y, x], h2[y, x], c2[y, x]
            b1, l1, b2, l2 = _keep_two(np.float32(sy2 * dy * dy), last_c[x], b1, l1, b2, l2)
            if prev_y[x] >= 0:
                dy = float(prev_y[x] - y)
                if sy2 * dy * dy <= reach2:
                    b1, l1, b2, l2 = _keep_two(np.float32(sy2 * dy * dy), prev_c[x], b1, l1, b2, l2)
            h1[y, x], c1[y, x], h2[y, x], c2[y, x] = b1, l1, b2, l2
    return h1, c1, h2, c2


@numba.njit(cache=True, nogil=True)
def _near_columns(h1_row, sx, reach, out):
    """``out[x]``: some column within ``reach`` of x (along the row) has a cell within ``reach`` vertically.

    False means no cell pixel lies in the square of half-width ``reach``
    around x, so ``d1 > reach``: a cheap test that spares the search.
    """
    nx = h1_row.shape[0]
    reach2 = reach * reach
    last = -np.inf
    for x in range(nx):  # nearest such column at or left of x
        if h1_row[x] <= reach2:
            last = x
        out[x] = sx * (x - last) <= reach
    last = np.inf
    for x in range(nx - 1, -1, -1):
        if h1_row[x] <= reach2:
            last = x
        out[x] = out[x] or sx * (last - x) <= reach


@numba.njit(cache=True, nogil=True)
def _other_columns(c1_row, c2_row, left, right):
    """Per column x, the nearest columns left and right (x included) offering a cell other than ``c1[x]``.

    A column offers its candidates ``c1`` and ``c2``; ``left[x] = -1`` /
    ``right[x] = nx`` where there is none.  Inside a cell, ``c1[x]`` is the
    cell itself, so when both are farther than ``radius`` no other cell is
    within ``radius`` and the pixel's border term is below ``tol``.
    """
    nx = c1_row.shape[0]
    for step in range(2):
        start, stop, inc, none = (0, nx, 1, -1) if step == 0 else (nx - 1, -1, -1, nx)
        out = left if step == 0 else right
        mixed = none  # last column with two candidates
        last, last_c, prev = none, 0, none  # last column with a cell; the last before it with another cell
        for x in range(start, stop, inc):
            c = c1_row[x]
            if c2_row[x] != 0:
                mixed = x
            if c != 0:
                if c != last_c:
                    prev = last
                last, last_c = x, c
            other = last if c == 0 else prev
            out[x] = max(mixed, other) if step == 0 else min(mixed, other)


@numba.njit(cache=True, nogil=True)
def _two_nearest_at(h1, c1, h2, c2, y, x, sx, radius):
    """Squared distances from (y, x) to its nearest two cells, searching columns outwards from x.

    Exact where ``d1 + d2 <= radius``; otherwise possibly overestimated
    (``inf``), never underestimated.  Columns at ``|dx| >= k`` are at least
    ``sx k`` away, so the search stops once that reaches ``d2`` (nothing left
    can improve either distance) or once ``min(d1, sx k) + sx k > radius``,
    i.e. ``sx k > radius - min(d1, radius / 2)`` (whatever is left could only
    give ``d1 + d2 > radius``).
    """
    nx = h1.shape[1]
    b1, l1, b2, l2 = np.inf, np.int32(0), np.inf, np.int32(0)
    half = radius / 2
    stop = radius - half if radius < np.inf else np.inf
    for k in range(max(x, nx - 1 - x) + 1):
        dk = sx * k
        dk2 = dk * dk
        if dk > stop or dk2 >= b2:
            break
        before = b1
        if k <= x:
            d = dk2 + h1[y, x - k]
            if d < b2:  # else neither candidate of the column can help (h2 >= h1)
                b1, l1, b2, l2 = _keep_two(d, c1[y, x - k], b1, l1, b2, l2)
                if c2[y, x - k] != 0:
                    b1, l1, b2, l2 = _keep_two(dk2 + h2[y, x - k], c2[y, x - k], b1, l1, b2, l2)
        if k and x + k < nx:
            d = dk2 + h1[y, x + k]
            if d < b2:
                b1, l1, b2, l2 = _keep_two(d, c1[y, x + k], b1, l1, b2, l2)
                if c2[y, x + k] != 0:
                    b1, l1, b2, l2 = _keep_two(dk2 + h2[y, x + k], c2[y, x + k], b1, l1, b2, l2)
        if b1 < before and radius < np.inf:
            stop = radius - min(np.sqrt(b1), half)
    return b1, b2


@numba.njit(cache=True, nogil=True)
def _two_nearest(lab, sy, sx, radius):
    h1, c1, h2, c2 = _column_candidates(lab, sy, radius)
    ny, nx = lab.shape
    d1 = np.empty((ny, nx), np.float32)
    d2 = np.empty((ny, nx), np.float32)
    for y in range(ny):
        for x in range(nx):
            b1, b2 = _two_nearest_at(h1, c1, h2, c2, y, x, sx, radius)
            d1[y, x] = np.sqrt(b1)
            d2[y, x] = np.sqrt(b2)
    return d1, d2


@numba.njit(cache=True, nogil=True)
def _add_border_term(lab, sy, sx, radius, w0, sigma, background_only, out):
    """``out += w0 exp(-(d1 + d2)^2 / (2 sigma^2))`` where ``d1 + d2 <= radius`` (and, optionally, background).

    Pixels with ``d1 + d2 > radius`` found cheaply are skipped before the
    search: background with no cell within ``radius / 2``
    (:func:`_near_columns`), cells with no other cell within ``radius``
    (:func:`_other_columns`).
    """
    h1, c1, h2, c2 = _column_candidates(lab, sy, radius)
    ny, nx = lab.shape
    scale = 1.0 / (2.0 * sigma * sigma)
    near = np.empty(nx, np.bool_)
    left, right = np.empty(nx, np.int64), np.empty(nx, np.int64)
    for y in range(ny):
        _near_columns(h1[y], sx, radius / 2, near)
        if not background_only:
            _other_columns(c1[y], c2[y], left, right)
        for x in range(nx):
            if lab[y, x] == 0:
                if not near[x]:
                    continue
            elif background_only or (sx * (x - left[x]) > radius and sx * (right[x] - x) > radius):
                continue
            b1, b2 = _two_nearest_at(h1, c1, h2, c2, y, x, sx, radius)
            if b2 < np.inf:
                total = np.sqrt(b1) + np.sqrt(b2)
                if total <= radius:
                    out[y, x] += np.float32(w0 * np.exp(-total * total * scale))


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
    A separable exact transform (the two passes of Felzenszwalb and
    Huttenlocher's, with the lower envelope replaced by a bounded search),
    compiled with numba.  Pass 1, per column: the nearest pixel of the
    nearest cell and of the nearest *other* cell, above and below.  These two
    suffice: if the second-nearest cell's nearest pixel ``b`` lies in a column
    whose two candidates are other cells, both are nearer than ``b`` and one
    of them is not the nearest cell, a contradiction.  Pass 2, per pixel:
    columns outward from its own, keeping the two nearest distinct cells,
    until no further column can matter (:func:`_two_nearest_at`).  Time is
    O(pixels x search width), the width bounded by ``d2`` and ``radius``;
    memory is four 32-bit images.
    """
    sy, sx = (float(s) for s in spacing)
    return _two_nearest(_compact(labels), sy, sx, float(radius))


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
    _add_border_term(_compact(labels), float(spacing[0]), float(spacing[1]), float(radius), float(w0), float(sigma),
                     border_region == "background", weights)
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
