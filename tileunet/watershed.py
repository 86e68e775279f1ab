"""Seeded watershed: touching cells as separate instances, on a whole plane and chunk by chunk.

The paper takes the connected components of the thresholded output
(section 2), which merges two cells that touch through a bridge of one or
two confident pixels.  Here every cell grows from a marker, its confident
core, as in marker-controlled watershed segmentation (Beucher & Meyer 1993;
the usual post-processing of cell and nucleus U-Nets):

1. mask: ``foreground > threshold``;
2. markers: mask pixels with ``seed_map > seed_threshold``, eroded by a disc
   of radius ``seed_erosion`` px, 4-connected components under
   ``min_seed_size`` px dropped;
3. flood: :func:`skimage.segmentation.watershed` of ``-seed_map`` from the
   markers inside the mask; a mask component without a marker stays one
   instance;
4. merge: adjacent instances whose shared boundary is at least
   ``merge_min_boundary`` px long and whose seed map there averages above
   ``merge_threshold`` are joined (:func:`merge`; 1 never joins);
5. instances under ``min_size`` px are removed.

Step 4 is not in the paper.  A cell whose core breaks into two markers is
cut in two by step 3 along a ridge of the seed map that is nearly as high
as the core, while two touching cells meet in a valley; joining across
high boundaries is the region merging that follows an over-segmenting
watershed, with the mean boundary value as the dissimilarity and single
linkage over the boundaries of the flood.  Its parameters are chosen on
the validation images like the others (:func:`tileunet.postprocess.tune`).

The seed map is the foreground probability of a two-class model, or the
interior probability of a border-class model, which is low on the border
between touching cells by construction.

Ids.  An instance is identified by its anchor: the first pixel in raster
order of its marker (of its component when it has none).  Ids ``1..K``
number the anchors in (plane, y, x) order, so the same instance gets the same
id however the plane is cut into chunks.

Chunked.  Each output chunk is labelled from the window of the chunk grown
by ``halo`` px (clipped to the plane, never mirrored) and keeps its own
pixels, named by their global anchors; a second pass sums instance sizes,
drops small ones and renumbers.  Flooding never crosses the mask, so a
touching group of cells (a connected component of the mask) that fits inside
every window it meets is labelled exactly as in the whole plane: the
chunked labels equal :func:`watershed_plane`'s for every cell whose group
extends less than ``halo`` px.  A colony larger than the halo is still
labelled consistently where its cells' basins are local, which is the
common case; :func:`tileunet.segment.finalise` logs how many instances
touch a window edge.
"""

import itertools

import numpy as np
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from skimage.morphology import disk
from skimage.segmentation import watershed

from .tiling import chunk_box, chunk_slices, grid_of, halo_window, in_stack

MAX_LABEL = np.iinfo(np.int32).max


def markers(seed_map, mask, seed_threshold, seed_erosion=0, min_seed_size=0):
    """Markers of the seeded watershed: confident cores, eroded, small ones dropped.

    Parameters
    ----------
    seed_map : numpy.ndarray of float, shape (Y, X)
        Foreground (two-class) or interior (border-class) probability.
    mask : numpy.ndarray of bool, shape (Y, X)
        The foreground; markers lie inside it.
    seed_threshold : float
        Seed map value above which a pixel is core.
    seed_erosion : int
        Radius (px) of the disc the cores are eroded by; outside the array
        counts as not core.
    min_seed_size : int
        Markers with fewer pixels (after erosion) are dropped.

    Returns
    -------
    numpy.ndarray of int32, shape (Y, X)
        Marker ids ``1..n`` (4-connected components), 0 elsewhere.

    Examples
    --------
    >>> p = np.array([[0.9, 0.9, 0.6, 0.9, 0.9]])
    >>> markers(p, p > 0.5, 0.8).tolist()
    [[1, 1, 0, 2, 2]]
    """
    core = (np.asarray(seed_map) > seed_threshold) & mask
    if seed_erosion > 0:
        core = ndimage.binary_erosion(core, disk(int(seed_erosion)), border_value=0)
    lab, n = ndimage.label(core)
    if min_seed_size > 0 and n:
        small = np.bincount(lab.ravel(), minlength=n + 1) < min_seed_size
        small[0] = True
        lab[small[lab]] = 0
    return lab.astype(np.int32, copy=False)


def flood(seed_map, mask, marker_labels):
    """Grow the markers over the mask; unmarked mask components become instances too.

    Parameters
    ----------
    seed_map : numpy.ndarray of float, shape (Y, X)
    mask : numpy.ndarray of bool, shape (Y, X)
    marker_labels : numpy.ndarray of int, shape (Y, X)
        From :func:`markers` (ids need not be consecutive).

    Returns
    -------
    labels : numpy.ndarray of int64, shape (Y, X)
        Instance ids, 0 = background.
    anchors : dict of int to int
        Instance id -> flat index (into this array) of its anchor pixel.
    """
    marker_labels = np.asarray(marker_labels)
    if marker_labels.any():
        lab = watershed(-np.asarray(seed_map, np.float32), marker_labels, mask=mask, connectivity=1)
        lab = lab.astype(np.int64, copy=False)
    else:
        lab = np.zeros(mask.shape, np.int64)
    ids, first = np.unique(marker_labels.ravel(), return_index=True)
    anchors = {int(i): int(f) for i, f in zip(ids, first) if i}
    rest, n_rest = ndimage.label(mask & (lab == 0))
    if n_rest:
        base = int(lab.max())
        lab[rest > 0] = rest[rest > 0] + base
        ids, first = np.unique(rest.ravel(), return_index=True)
        anchors.update({int(i) + base: int(f) for i, f in zip(ids, first) if i})
    return lab, anchors


def flood_window(foreground, seed_map, threshold=0.5, seed_threshold=0.8, seed_erosion=0, min_seed_size=0):
    """Steps 1-3 of the module notes on one window: mask, markers and flood.

    Parameters
    ----------
    foreground, seed_map : numpy.ndarray of float, shape (h, w)
        The window's probabilities (the seed map may be the foreground itself).
    threshold, seed_threshold, seed_erosion, min_seed_size
        See :func:`markers` and the module notes.

    Returns
    -------
    (numpy.ndarray of int64, dict of int to int)
        As :func:`flood`.
    """
    mask = np.asarray(foreground) > threshold
    seed_map = np.asarray(seed_map)
    return flood(seed_map, mask, markers(seed_map, mask, seed_threshold, seed_erosion, min_seed_size))


def boundaries(lab, values):
    """The shared boundaries of 4-adjacent instances, their lengths and the mean of ``values`` along them.

    Parameters
    ----------
    lab : numpy.ndarray of int, shape (h, w)
        Instance ids, 0 = background.
    values : numpy.ndarray of float, shape (h, w)
        The seed map the flood ran on.

    Returns
    -------
    pairs : numpy.ndarray of int64, shape (M, 2)
        Ids (a, b), a < b, of instances with 4-adjacent pixels.
    length : numpy.ndarray of int64, shape (M,)
        Pixel pairs across each boundary (px).
    mean : numpy.ndarray of float64, shape (M,)
        Mean over those pixel pairs of the two pixels' mean value.

    Examples
    --------
    >>> pairs, length, mean = boundaries(np.array([[1, 1, 2], [1, 3, 2]]), np.full((2, 3), 0.5))
    >>> pairs.tolist(), length.tolist(), mean.tolist()
    ([[1, 2], [1, 3], [2, 3]], [1, 2, 1], [0.5, 0.5, 0.5])
    """
    lab, v = np.asarray(lab, np.int64), np.asarray(values, np.float64)
    a = np.concatenate([lab[:, :-1].ravel(), lab[:-1].ravel()])
    b = np.concatenate([lab[:, 1:].ravel(), lab[1:].ravel()])
    s = np.concatenate([(v[:, :-1] + v[:, 1:]).ravel(), (v[:-1] + v[1:]).ravel()]) / 2
    cross = (a > 0) & (b > 0) & (a != b)
    a, b = a[cross], b[cross]
    pairs, inverse, length = np.unique(np.stack([np.minimum(a, b), np.maximum(a, b)], axis=1), axis=0,
                                       return_inverse=True, return_counts=True)
    mean = np.bincount(inverse.ravel(), weights=s[cross], minlength=len(pairs)) / np.maximum(length, 1)
    return pairs.reshape(-1, 2), length, mean


def joining(table, merge_threshold=1.0, merge_min_boundary=1):
    """Indices into :func:`boundaries`' table of the boundaries step 4 joins across.

    Parameters
    ----------
    table : (pairs, length, mean)
        :func:`boundaries` of a flood.
    merge_threshold : float
        Boundaries whose mean seed map exceeds this are joined (1: none is).
    merge_min_boundary : int
        Boundaries shorter than this (px) are never joined.

    Returns
    -------
    numpy.ndarray of int64, shape (J,)
    """
    _, length, mean = table
    return np.flatnonzero((mean > merge_threshold) & (length >= merge_min_boundary))


def join(lab, anchors, pairs):
    """Instances joined along the given pairs (single linkage).

    Parameters
    ----------
    lab : numpy.ndarray of int64, shape (h, w)
        Instance ids, 0 = background (:func:`flood`).
    anchors : dict of int to int
        Instance id -> flat index of its anchor pixel.
    pairs : numpy.ndarray of int, shape (J, 2)
        Ids of the instances to join.

    Returns
    -------
    (numpy.ndarray of int64, dict of int to int)
        As ``lab`` and ``anchors``; a joined instance takes the id and the
        anchor of its member with the first anchor, so that ids stay
        independent of the window.

    Examples
    --------
    >>> join(np.array([[1, 1, 2, 2, 3]]), {1: 0, 2: 2, 3: 4}, np.array([[1, 2]]))[0].tolist()
    [[1, 1, 1, 1, 3]]
    """
    pairs = np.asarray(pairs, np.int64).reshape(-1, 2)
    if not len(pairs):
        return lab, anchors
    n = int(lab.max()) + 1
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    n_comp, comp = connected_components(graph, directed=False)
    order = np.array(sorted(anchors, key=anchors.get), np.int64)
    comp_of = comp[order]
    _, first = np.unique(comp_of, return_index=True)
    rep = np.zeros(n_comp, np.int64)
    rep[comp_of[first]] = order[first]
    lut = rep[comp]
    lut[0] = 0
    return lut[lab], {int(i): anchors[int(i)] for i in order[first]}


def merge(lab, anchors, seed_map, merge_threshold=1.0, merge_min_boundary=1):
    """Step 4 of the module notes: instances joined across their high boundaries.

    Parameters
    ----------
    lab, anchors
        A flood's instance ids and anchors, as for :func:`join`.
    seed_map : numpy.ndarray of float, shape (h, w)
        The map the flood ran on.
    merge_threshold, merge_min_boundary
        See :func:`joining`.

    Returns
    -------
    (numpy.ndarray of int64, dict of int to int)
        As :func:`join`.

    Examples
    --------
    >>> lab = np.array([[1, 1, 2, 2, 3]])
    >>> merge(lab, {1: 0, 2: 2, 3: 4}, np.array([[0.9, 0.9, 0.9, 0.2, 0.2]]), 0.8)[0].tolist()
    [[1, 1, 1, 1, 3]]
    """
    table = boundaries(lab, seed_map)
    return join(lab, anchors, table[0][joining(table, merge_threshold, merge_min_boundary)])


def anchored_window(foreground, seed_map, origin, plane_shape, plane=0, threshold=0.5, seed_threshold=0.8,
                    seed_erosion=0, min_seed_size=0, merge_threshold=1.0, merge_min_boundary=1):
    """Seeded-watershed instances of one window, named by their global anchors.

    Parameters
    ----------
    foreground, seed_map : numpy.ndarray of float, shape (h, w)
        The window's probabilities (the seed map may be the foreground itself).
    origin : (int, int)
        (y, x) of the window's first pixel in its plane (px).
    plane_shape : (int, int)
        (Y, X) of the plane.
    plane : int
        Index of the plane in a stack.
    threshold, seed_threshold, seed_erosion, min_seed_size, merge_threshold, merge_min_boundary
        See :func:`markers`, :func:`merge` and the module notes.

    Returns
    -------
    numpy.ndarray of int64, shape (h, w)
        0 for background, else ``1 +`` the anchor's flat index in the
        (N, Y, X) stack: unique over the stack and ordered as the anchors.
    """
    lab, anchors = flood_window(foreground, seed_map, threshold, seed_threshold, seed_erosion, min_seed_size)
    if not anchors:
        return lab
    if merge_threshold < 1:
        lab, anchors = merge(lab, anchors, seed_map, merge_threshold, merge_min_boundary)
    local = np.array(sorted(anchors))
    wy, wx = np.divmod(np.array([anchors[i] for i in local], np.int64), lab.shape[1])
    glob = (plane * plane_shape[0] + origin[0] + wy) * plane_shape[1] + origin[1] + wx + 1
    lut = np.zeros(int(local.max()) + 1, np.int64)
    lut[local] = glob
    return lut[lab]


def renumber(ids, counts, min_size=0):
    """The final ids of anchored instances: small ones dropped, the rest numbered 1..K in anchor order.

    Parameters
    ----------
    ids : numpy.ndarray of int64, shape (M,)
        Anchored ids (:func:`anchored_window`), possibly repeated (one entry per chunk).
    counts : numpy.ndarray of int, shape (M,)
        Pixels of each entry.
    min_size : int
        Instances with fewer pixels in total are dropped.

    Returns
    -------
    keys : numpy.ndarray of int64, shape (U,)
        Sorted unique anchored ids.
    final : numpy.ndarray of int32, shape (U,)
        Final id of each key (0 = dropped).

    Examples
    --------
    >>> keys, final = renumber(np.array([40, 7, 40, 9]), np.array([3, 5, 2, 1]), min_size=2)
    >>> keys.tolist(), final.tolist()
    ([7, 9, 40], [1, 0, 2])
    """
    keys, inverse = np.unique(np.asarray(ids, np.int64), return_inverse=True)
    sizes = np.bincount(inverse, weights=counts, minlength=len(keys))
    keep = sizes >= max(min_size, 1)
    final = np.cumsum(keep, dtype=np.int64) * keep
    if final.max(initial=0) > MAX_LABEL:
        raise ValueError(f"{int(final.max())} instances do not fit int32 labels; raise the threshold or min_size")
    return keys, final.astype(np.int32)


def apply_renumbering(anchored, keys, final):
    """Map anchored ids (any shape, 0 = background) to final int32 ids with :func:`renumber`'s table."""
    anchored = np.asarray(anchored)
    out = np.zeros(anchored.shape, np.int32)
    fg = anchored > 0
    out[fg] = final[np.searchsorted(keys, anchored[fg])]
    return out


def watershed_plane(foreground, seed_map=None, threshold=0.5, seed_threshold=0.8, seed_erosion=0,
                    min_seed_size=0, merge_threshold=1.0, merge_min_boundary=1, min_size=0):
    """Seeded-watershed instance labels of one whole plane (the reference for the chunked path).

    Parameters
    ----------
    foreground : numpy.ndarray of float, shape (Y, X)
        Foreground probability.
    seed_map : numpy.ndarray of float, shape (Y, X), optional
        Where markers come from and what is flooded; the foreground if omitted.
    threshold, seed_threshold, seed_erosion, min_seed_size, merge_threshold, merge_min_boundary, min_size
        See the module notes.

    Returns
    -------
    numpy.ndarray of int32, shape (Y, X)
        Ids 1..K in anchor order, 0 = background.

    Examples
    --------
    Two cells joined by a bridge of lower probability: one component, two instances.

    >>> p = np.array([[0.9, 0.95, 0.6, 0.7, 0.9, 0.9]])
    >>> watershed_plane(p, threshold=0.5, seed_threshold=0.8).tolist()
    [[1, 1, 1, 2, 2, 2]]
    """
    foreground = np.asarray(foreground)
    if foreground.ndim != 2:
        raise ValueError(f"watershed_plane takes one 2D plane, got shape {foreground.shape}")
    seed_map = foreground if seed_map is None else np.asarray(seed_map)
    anchored = anchored_window(foreground, seed_map, (0, 0), foreground.shape, 0, threshold, seed_threshold,
                               seed_erosion, min_seed_size, merge_threshold, merge_min_boundary)
    ids, counts = np.unique(anchored[anchored > 0], return_counts=True)
    return apply_renumbering(anchored, *renumber(ids, counts, min_size))


def _edge_ids(anchored, window, plane_shape):
    """Anchored ids on the window's edges that are not the plane's edges."""
    edges = []
    if window[0].start > 0:
        edges.append(anchored[0])
    if window[0].stop < plane_shape[0]:
        edges.append(anchored[-1])
    if window[1].start > 0:
        edges.append(anchored[:, 0])
    if window[1].stop < plane_shape[1]:
        edges.append(anchored[:, -1])
    return np.unique(np.concatenate(edges)) if edges else np.zeros(0, np.int64)


def label_chunked(foreground, seed_map, anchored, labels, chunk, halo, params, min_size=0, decode=np.asarray,
                  workers=1, progress=None):
    """Seeded-watershed labels of a chunked slide or stack, written chunk by chunk.

    Parameters
    ----------
    foreground : array-like, shape (Y, X) or (N, Y, X)
        Stored foreground probability (zarr or numpy), read window by window.
    seed_map : array-like, same shape, or None
        Stored seed map; the foreground when None.
    anchored : writable array-like of int64, same shape
        Scratch array for the first pass (anchored ids, :func:`anchored_window`).
    labels : writable array-like of int32, same shape
        Receives the final ids.
    chunk : int
        Chunk edge (px) of ``anchored`` and ``labels``: each task writes one chunk.
    halo : int
        Context (px) read around each chunk; at least the extent of the
        largest touching group of cells for exact results (module notes).
    params : dict
        ``threshold, seed_threshold, seed_erosion, min_seed_size, merge_threshold, merge_min_boundary``
        (:func:`markers`, :func:`merge`).
    min_size : int
        Instances with fewer pixels (over all chunks) are removed.
    decode : callable
        Stored values -> float32 probability.
    workers : int
        Threads of the local dask scheduler.
    progress : callable(int), optional
        Called with the number of chunks each finished task did.

    Returns
    -------
    n_instances : int
    n_beyond_halo : int
        Instances that reach from a chunk to the edge of its window: longer
        than the halo, so their labels may depend on the chunking.
    """
    import dask

    shape, plane_shape = foreground.shape, tuple(foreground.shape[-2:])
    cells = list(itertools.product(*map(range, grid_of(shape, chunk))))

    def first(p, cy, cx):
        window, _ = halo_window(plane_shape, chunk, cy, cx, halo)
        fg = decode(foreground[in_stack(shape, p, window)])
        sm = fg if seed_map is None else decode(seed_map[in_stack(shape, p, window)])
        full = anchored_window(fg, sm, (window[0].start, window[1].start), plane_shape, p, **params)
        box = chunk_box(plane_shape, chunk, cy, cx)
        own = full[tuple(slice(b.start - w.start, b.stop - w.start) for b, w in zip(box, window))]
        anchored[in_stack(shape, p, box)] = own
        ids, counts = np.unique(own[own > 0], return_counts=True)
        beyond = np.intersect1d(_edge_ids(full, window, plane_shape), ids)
        if progress:
            progress(1)
        return ids, counts, beyond

    def second(p, cy, cx, keys, final):
        index = chunk_slices(shape, chunk, p, cy, cx)
        labels[index] = apply_renumbering(anchored[index], keys, final)
        if progress:
            progress(1)

    found = dask.compute(*[dask.delayed(first)(*c) for c in cells], scheduler="threads", num_workers=workers)
    ids = np.concatenate([f[0] for f in found] + [np.zeros(0, np.int64)])
    counts = np.concatenate([f[1] for f in found] + [np.zeros(0, np.int64)])
    keys, final = renumber(ids, counts, min_size)
    dask.compute(*[dask.delayed(second)(*c, keys, final) for c in cells], scheduler="threads", num_workers=workers)
    beyond = np.unique(np.concatenate([f[2] for f in found] + [np.zeros(0, np.int64)]))
    kept = final[np.searchsorted(keys, beyond)] > 0 if len(beyond) else np.zeros(0, bool)
    return int(final.max(initial=0)), int(kept.sum())
