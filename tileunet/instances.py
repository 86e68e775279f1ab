"""Instance labels of a chunked foreground mask, consistent across chunk borders.

Each chunk is labelled on its own (:func:`scipy.ndimage.label`, 4-connected),
its ids are offset into one global numbering, and the pairs of ids that touch
across a chunk face are joined by a connected-components pass over the
equivalence graph (:func:`scipy.sparse.csgraph.connected_components`), the
scheme of ``dask_image.ndmeasure.label``.  Chunks are visited in raster order
keeping only the previous chunk row's bottom edges, so memory grows with one
chunk row and the number of labels, never with the slide.

The result equals :func:`scipy.ndimage.label` of the whole mask up to a
renumbering: ids are ``1..K`` in order of first appearance in
(plane, chunk row, chunk column, raster order inside the chunk).
"""

import dataclasses

import numpy as np
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

MAX_LABEL = np.iinfo(np.int32).max


@dataclasses.dataclass
class Labelling:
    """The global numbering of a chunked mask, from :func:`scan`.

    Attributes
    ----------
    offsets : numpy.ndarray of int64, shape (N, ny, nx)
        Id offset of each chunk's local labels (local id ``i`` is ``offset + i``).
    mapping : numpy.ndarray of int32, shape (n_local + 1,)
        Final id of every offset local id; 0 for background and removed instances.
    n_instances : int
    """

    offsets: np.ndarray
    mapping: np.ndarray
    n_instances: int


def label_block(mask):
    """4-connected components of one 2D chunk: (int32 labels 1..n, n)."""
    labels, n = ndimage.label(np.asarray(mask, dtype=bool))
    return labels.astype(np.int32, copy=False), int(n)


def face_pairs(a, b):
    """Unique pairs of ids facing each other on two adjacent edges.

    Parameters
    ----------
    a, b : numpy.ndarray of int, shape (L,)
        Global ids along the touching edges of two neighbouring chunks,
        position by position (0 = background).

    Returns
    -------
    numpy.ndarray of int64, shape (P, 2)

    Examples
    --------
    >>> face_pairs(np.array([0, 5, 5, 6]), np.array([9, 9, 0, 7])).tolist()
    [[5, 9], [6, 7]]
    """
    both = (a > 0) & (b > 0)
    pairs = np.stack([a[both], b[both]], axis=1).astype(np.int64)
    return np.unique(pairs, axis=0) if len(pairs) else pairs.reshape(0, 2)


def resolve(n_local, pairs, sizes=None, min_size=0):
    """Final ids from the equivalences: connected components, small ones dropped, renumbered.

    Parameters
    ----------
    n_local : int
        Offset local ids are ``1..n_local``.
    pairs : numpy.ndarray of int, shape (P, 2)
        Ids that belong to one instance.
    sizes : numpy.ndarray of int, shape (n_local + 1,), optional
        Pixels per offset local id; needed when ``min_size > 0``.
    min_size : int
        Instances with fewer pixels are mapped to 0.

    Returns
    -------
    mapping : numpy.ndarray of int32, shape (n_local + 1,)
    n_instances : int
    """
    n = n_local + 1
    graph = coo_matrix((np.ones(len(pairs), np.int8), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    # scipy numbers components by their lowest node, so ids follow first appearance
    _, comp = connected_components(graph, directed=False)
    keep = np.ones(comp.max() + 1, bool)
    keep[comp[0]] = False  # node 0 is the background
    if min_size > 0:
        keep &= np.bincount(comp, weights=sizes, minlength=len(keep)) >= min_size
    new_id = np.cumsum(keep, dtype=np.int64) * keep
    if new_id.max(initial=0) > MAX_LABEL:
        raise ValueError(f"{int(new_id.max())} instances do not fit int32 labels; raise the threshold or min_size")
    return new_id[comp].astype(np.int32), int(keep.sum())


def scan(read_mask, grid, min_size=0):
    """First pass: label every chunk, collect the face equivalences, resolve.

    Parameters
    ----------
    read_mask : callable (plane, cy, cx) -> numpy.ndarray of bool, shape (h, w)
        The foreground of one chunk.
    grid : tuple of int
        ``(N, ny, nx)``: planes and chunk rows / columns.  Planes are labelled
        independently; ids are unique over the whole stack.
    min_size : int

    Returns
    -------
    Labelling
    """
    offsets = np.zeros(grid, np.int64)
    pairs, sizes, total = [], [np.zeros(1, np.int64)], 0
    for p in range(grid[0]):
        above = [None] * grid[2]  # bottom edge of the chunk row above, in global ids
        for cy in range(grid[1]):
            left = None
            for cx in range(grid[2]):
                local, n = label_block(read_mask(p, cy, cx))
                glob = np.where(local > 0, local + total, 0)
                offsets[p, cy, cx] = total
                total += n
                if min_size > 0:
                    sizes.append(np.bincount(local.ravel(), minlength=n + 1)[1:])
                if above[cx] is not None:
                    pairs.append(face_pairs(above[cx], glob[0]))
                if left is not None:
                    pairs.append(face_pairs(left, glob[:, 0]))
                above[cx], left = glob[-1].copy(), glob[:, -1].copy()
    pairs = np.concatenate(pairs) if pairs else np.zeros((0, 2), np.int64)
    mapping, n_inst = resolve(total, pairs, np.concatenate(sizes) if min_size > 0 else None, min_size)
    return Labelling(offsets, mapping, n_inst)


def relabel_block(mask, offset, mapping):
    """Second pass for one chunk: its final int32 ids (labels it again, deterministically)."""
    local, _ = label_block(mask)
    return np.where(local > 0, mapping[local + offset], 0).astype(np.int32)


def label_chunked(read_mask, write_labels, grid, min_size=0):
    """Instance labels of a chunked mask, written chunk by chunk.

    Parameters
    ----------
    read_mask : callable (plane, cy, cx) -> bool array (h, w)
    write_labels : callable (plane, cy, cx, labels) -> None
        Receives the int32 final ids of one chunk.
    grid : tuple of int
        ``(N, ny, nx)``.
    min_size : int
        Instances with fewer pixels (over all their chunks) become background.

    Returns
    -------
    int
        Number of instances.

    Examples
    --------
    >>> mask = np.array([[1, 1, 0, 1], [0, 1, 1, 1]], bool)
    >>> out = np.zeros(mask.shape, np.int32)
    >>> def write(p, cy, cx, lab):
    ...     out[:, 2 * cx:2 * cx + 2] = lab
    >>> label_chunked(lambda p, cy, cx: mask[:, 2 * cx:2 * cx + 2], write, (1, 1, 2))
    1
    >>> out.tolist()
    [[1, 1, 0, 1], [0, 1, 1, 1]]
    """
    lab = scan(read_mask, grid, min_size)
    for p in range(grid[0]):
        for cy in range(grid[1]):
            for cx in range(grid[2]):
                write_labels(p, cy, cx, relabel_block(read_mask(p, cy, cx), lab.offsets[p, cy, cx], lab.mapping))
    return lab.n_instances
