"""One tiling vocabulary: the chunk grid of a slide, and the windows read and written around a chunk.

Prediction, the chunked instance step and training all cut planes the same way:

- the **grid**: chunk (cy, cx) of a plane covers ``chunk_box`` (clipped at the
  edge), :func:`grid_of` counts the chunks and :func:`bands` groups chunk rows
  into scatter-gather parts;
- the **network window**: a :class:`TilePlan` reads the chunk grown by the
  network's context, mirrored outside the plane (:func:`read_window`, paper
  section 2, figure 2: overlap-tile), and keeps the part of the output that is
  the chunk;
- the **halo window**: :func:`halo_window` grows a chunk by a halo clipped to
  the plane (never mirrored), for operators that need neighbours but must not
  invent them (the watershed).

Every read touches only the stored chunks under its window.
"""

import dataclasses
import math

import numpy as np

from .model import margin


MIRROR_MODE = "symmetric"
"""numpy.pad mode of the border mirroring; dask's ``boundary="reflect"`` is the same."""



def mirror_index(start, stop, n, mode=MIRROR_MODE):
    """Indices into an axis of length ``n`` for positions ``start..stop-1``, mirrored outside.

    Parameters
    ----------
    start, stop : int
        Window on the axis; may extend beyond ``[0, n)`` by any amount.
    n : int
        Axis length, >= 1.
    mode : {"symmetric", "reflect"}
        As :func:`numpy.pad`: ``symmetric`` repeats the edge pixel, ``reflect`` does not.

    Returns
    -------
    numpy.ndarray of int, shape (stop - start,)

    Examples
    --------
    >>> mirror_index(-2, 5, 4).tolist()
    [1, 0, 0, 1, 2, 3, 3]
    """
    if mode not in ("symmetric", "reflect"):
        raise ValueError(f"mode must be 'symmetric' or 'reflect', got {mode!r}")
    i = np.arange(start, stop)
    if n == 1:
        return np.zeros_like(i)
    period = 2 * n if mode == "symmetric" else 2 * (n - 1)
    i = np.mod(i, period)
    return np.where(i < n, i, period - i - (1 if mode == "symmetric" else 0))


def read_window(array, plane, y0, x0, height, width, mode=MIRROR_MODE):
    """Read a ``height`` x ``width`` window at (y0, x0) of one plane, mirrored at the border.

    Only the bounding box of the needed pixels is read from ``array``.

    Parameters
    ----------
    array : array-like, shape (Y, X) or (N, Y, X); (C, Y, X) or (N, C, Y, X) with channels
        zarr, numpy or anything sliceable.
    plane : int or None
        Index on the leading (stack) axis; None for an image without one.
    y0, x0 : int
        Window origin (px); may be negative.
    height, width : int

    Returns
    -------
    numpy.ndarray, shape (height, width), or (C, height, width) with channels; dtype of ``array``
    """
    ny, nx = array.shape[-2:]
    rows, cols = mirror_index(y0, y0 + height, ny, mode), mirror_index(x0, x0 + width, nx, mode)
    box = (slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1))
    lead = () if plane is None else (plane,)
    channels = (slice(None),) * (len(array.shape) - 2 - len(lead))  # explicit: some readers take no Ellipsis
    block = np.asarray(array[(*lead, *channels, *box)])
    return block[(Ellipsis, *np.ix_(rows - rows.min(), cols - cols.min()))]


def inside_mask(y0, x0, height, width, shape):
    """float32 (height, width): 1 where the window lies inside a plane of ``shape``, else 0."""
    rows = (np.arange(y0, y0 + height) >= 0) & (np.arange(y0, y0 + height) < shape[0])
    cols = (np.arange(x0, x0 + width) >= 0) & (np.arange(x0, x0 + width) < shape[1])
    return (rows[:, None] & cols[None, :]).astype(np.float32)


def grid_of(shape, chunk):
    """(N, ny, nx): planes and chunk rows / columns of a (Y, X) or (N, Y, X) slide."""
    n = shape[0] if len(shape) == 3 else 1
    return n, math.ceil(shape[-2] / chunk), math.ceil(shape[-1] / chunk)


def chunk_box(plane_shape, chunk, cy, cx):
    """(rows, columns) slices of chunk (cy, cx) in a (Y, X) plane, clipped at its edge."""
    return (slice(cy * chunk, min((cy + 1) * chunk, plane_shape[0])),
            slice(cx * chunk, min((cx + 1) * chunk, plane_shape[1])))


def in_stack(shape, p, box):
    """Index of a plane box in an array of ``shape``: the box itself for (Y, X), plane ``p`` of (N, Y, X)."""
    return tuple(box) if len(shape) == 2 else (p, *box)


def chunk_slices(shape, chunk, p, cy, cx):
    """Index of chunk (p, cy, cx) in an array of ``shape`` (Y, X) or (N, Y, X), clipped at the edge."""
    return in_stack(shape, p, chunk_box(shape[-2:], chunk, cy, cx))


def input_window(image, plane, cy, cx, tiling, channels=1):
    """Raw network input of chunk (cy, cx): (C, window, window), mirrored outside the plane.

    Reads only the bounding box of the pixels it needs.  ``image`` is (Y, X) or (N, Y, X),
    or with ``channels`` > 1 (C, Y, X) or (N, C, Y, X).
    """
    y0, x0 = tiling.read_origin(cy, cx)
    stacked = image.ndim == (4 if channels > 1 else 3)
    window = read_window(image, plane if stacked else None, y0, x0, tiling.window, tiling.window)
    return window if channels > 1 else window[None]


def bands(n_rows, parts):
    """``parts`` bands of whole chunk rows, as [(r0, r1), ...] covering ``0..n_rows`` (scatter-gather).

    Examples
    --------
    >>> bands(7, 3)
    [(0, 2), (2, 4), (4, 7)]
    """
    edges = [i * n_rows // parts for i in range(parts + 1)]
    return [(a, b) for a, b in zip(edges[:-1], edges[1:])]


def halo_window(shape, chunk, cy, cx, halo):
    """The window of chunk (cy, cx) grown by ``halo`` px and clipped to a (Y, X) plane.

    Returns
    -------
    window : (slice, slice)
        In plane coordinates.
    core : (slice, slice)
        The chunk inside the window.

    Examples
    --------
    >>> halo_window((10, 7), 4, 1, 1, 2)
    ((slice(2, 10, None), slice(2, 7, None)), (slice(2, 6, None), slice(2, 5, None)))
    """
    (y0, y1), (x0, x1) = ((s.start, s.stop) for s in chunk_box(shape, chunk, cy, cx))
    wy0, wx0 = max(y0 - halo, 0), max(x0 - halo, 0)
    wy1, wx1 = min(y1 + halo, shape[0]), min(x1 + halo, shape[1])
    return (slice(wy0, wy1), slice(wx0, wx1)), (slice(y0 - wy0, y1 - wy0), slice(x0 - wx0, x1 - wx0))


@dataclasses.dataclass(frozen=True)
class TilePlan:
    """How a slide is cut for the network (all in px).

    Attributes
    ----------
    chunk : int
        Output chunk edge: the stored chunk, and the stride of the windows.
    window : int
        Network input edge.
    context : int
        Input read before the chunk on each axis: chunk (cy, cx) reads the
        window whose origin is ``(cy * chunk - context, cx * chunk - context)``.
    skip : int
        Network output before the chunk on each axis (0 for valid
        convolutions, whose output starts where the chunk does).
    """

    chunk: int
    window: int
    context: int
    skip: int

    def read_origin(self, cy, cx):
        """(y, x) of chunk (cy, cx)'s input window; negative or beyond the plane where it is mirrored."""
        return cy * self.chunk - self.context, cx * self.chunk - self.context

    def output_crop(self, height, width):
        """The part of the network output that is the chunk, for a chunk clipped to (height, width)."""
        return slice(self.skip, self.skip + height), slice(self.skip, self.skip + width)


def plan_tiling(model, tile):
    """The :class:`TilePlan` for output tile edge ``tile`` of ``model``.

    Parameters
    ----------
    model : tileunet.model.UNet
    tile : int
        Network output edge; for a valid-convolution net one it can produce
        (``model.input_size(tile)`` exists), for a same-padding net a multiple
        of ``2**(depth-1)``.

    Returns
    -------
    TilePlan

    Notes
    -----
    Same-padding nets (not the paper) read a halo of the valid net's margin and
    keep the centre; their chunks then differ slightly from the whole-image
    pass, the zero padding inside every window being different.
    """
    depth, padding = model.config.depth, model.config.padding
    align = 2 ** (depth - 1)
    if padding == "valid":
        if int(tile) != tile or model.input_size(int(tile)) is None:
            near = [o for o in range(max(1, tile - 8 * align), tile + 8 * align) if model.input_size(o)]
            near = sorted(near, key=lambda o: abs(o - tile))[:4]
            raise ValueError(f"predict tile {tile} is not an output edge of this depth-{depth} valid U-Net. "
                             f"Fix: set predict.tile to one of {sorted(near)}")
        chunk = tile - tile % align
        if chunk == 0:
            raise ValueError(f"predict tile {tile} is smaller than the pooling grid {align}. "
                             f"Fix: set predict.tile to at least {smallest_output(model, align)}")
        return TilePlan(chunk, model.input_size(tile), model.margin, 0)
    if tile % align or tile <= 0:
        raise ValueError(f"predict tile {tile} must be a positive multiple of {align} for a depth-{depth} "
                         f"same-padding U-Net. Fix: set predict.tile to {max(align, tile - tile % align)}")
    halo = -(-margin(depth, "valid") // align) * align
    return TilePlan(tile, tile + 2 * halo, halo, halo)


def smallest_output(model, n):
    """Smallest output edge >= n that the network can produce."""
    o = n
    while model.input_size(o) is None:
        o += 1
    return o
