"""Pictures for the Snakemake report, one module per stage (matplotlib, Agg backend)."""

import numpy as np


def grey(image, low=0.5, high=99.5):
    """An image scaled for display: its ``low``..``high`` percentiles -> 0..1, clipped; float32 (Y, X).

    Robust to the intensity normalisation chosen in the config, which need
    not put the image in [0, 1].
    """
    image = np.nan_to_num(np.asarray(image, dtype=np.float32))
    lo, hi = np.percentile(image, [low, high]) if image.size else (0.0, 1.0)
    return np.clip((image - lo) / max(hi - lo, 1e-6), 0, 1)


def display_rgb(image):
    """An image for display as float (Y, X, 3) in [0, 1]: grey for (Y, X), channels as R, G, B for (C, Y, X).

    Each channel is scaled by :func:`grey`; of more than three channels the first three are
    shown, and two channels are shown magenta / green (R = B = channel 0, G = channel 1).
    """
    image = np.asarray(image)
    if image.ndim == 2:
        return np.repeat(grey(image)[..., None], 3, axis=-1)
    shown = [grey(c) for c in image[:3]]
    if len(shown) == 1:
        shown *= 3
    elif len(shown) == 2:
        shown.append(shown[0])
    return np.stack(shown, axis=-1)


def cell_box(labels, margin=32):
    """The part of a frame worth showing: the cells' bounding box grown by ``margin`` px.

    Where cells cover ~1 % of a frame, the whole frame shows them (and the
    border weights between them) as a few pixels.

    Parameters
    ----------
    labels : array-like of int, shape (Y, X)
        Instance ids, 0 = background.
    margin : int
        Pixels of context kept on each side, clipped to the frame.

    Returns
    -------
    (slice, slice)
        Rows and columns; the whole frame when there are no cells.

    Examples
    --------
    >>> cell_box(np.pad([[1]], ((50, 60), (70, 80))), margin=10)
    (slice(40, 61, None), slice(60, 81, None))
    """
    labels = np.asarray(labels)
    rows, cols = np.flatnonzero(labels.any(axis=1)), np.flatnonzero(labels.any(axis=0))
    if not rows.size:
        return slice(0, labels.shape[0]), slice(0, labels.shape[1])
    return tuple(slice(max(int(a[0]) - margin, 0), min(int(a[-1]) + 1 + margin, n))
                 for a, n in zip((rows, cols), labels.shape))


def box_note(box, shape):
    """"(rows a-b, columns c-d)" for a ``box`` smaller than ``shape``; "" for the whole frame."""
    if (box[0].stop - box[0].start, box[1].stop - box[1].start) == tuple(shape):
        return ""
    return f"(rows {box[0].start}-{box[0].stop}, columns {box[1].start}-{box[1].stop})"
