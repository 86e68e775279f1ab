"""The two nearest distinct cells of every pixel: one exact separable transform, compiled with numba.

The border term of the paper's weight map (section 3, eq. 2) needs ``d1`` and
``d2``, the distances to the nearest and second-nearest cell.  A column pass
keeps, per column, the two nearest distinct cells within the cut-off radius;
a row pass combines the columns in reach.  Exact within the radius, never an
underestimate beyond it (tests/test_weights.py), O(pixels x radius).
"""

import math

import numba
import numpy as np



def compact(labels):
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
def add_border_term(lab, sy, sx, radius, w0, sigma, background_only, out):
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
    return _two_nearest(compact(labels), sy, sx, float(radius))
