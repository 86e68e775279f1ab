"""Overlap-tile inference (paper section 2, figure 2): the network's maps of tiles and the whole-image reference.

Each output chunk is predicted from its input window, the chunk grown by the
network's margin on every side and read from the neighbouring pixels; outside
the slide the context is mirrored (``numpy.pad(mode="symmetric")``).  With
valid convolutions the chunked result equals one forward pass over the whole
mirror-padded image, :func:`predict_image`, provided every chunk starts on the
2x2 pooling grid of that pass: chunk origins are multiples of ``2**(depth-1)``
(:func:`tileunet.tiling.plan_tiling`).  :func:`predict_tiles` is the one
tiled path: the slide pipeline (:mod:`tileunet.segment`) and validation
during training (:func:`plane_maps`) both call it.
"""

import dask.array as da
import numpy as np
import torch

from . import __version__
from .checks import check_image  # noqa: F401 (shared with ingest and the workflow; segment imports it from here)
from .device import autocast
from .normalize import apply_range, intensity_range
from .tiling import chunk_slices, grid_of, input_window, plan_tiling, smallest_output



def normalization_params(model):
    """(low, high) percentiles from ``model.normalization`` (section "normalize" of design.md)."""
    norm = dict(getattr(model, "normalization", None) or {})
    if norm.get("method", "percentile") != "percentile":
        raise ValueError(f"model normalization {norm.get('method')!r} is unknown to this tileunet "
                         f"({__version__}). Fix: re-train the model with this version")
    return float(norm.get("low", 1.0)), float(norm.get("high", 99.8))


#: The 8 symmetries of the square as (quarter turns, mirrored) for test-time augmentation.
DIHEDRAL = tuple((k, flip) for flip in (False, True) for k in range(4))


def _forward(model, batch, amp=False, tta=False):
    """Soft-max class probabilities of a batch: (B, C, s, s) float32 -> (B, classes, o, o) float32.

    With ``tta`` the mean over the 8 flips and quarter turns of the input,
    each output turned back (not in the paper; exact under overlap-tile, as
    every turn of a valid tile is a valid tile).
    """
    device = next(model.parameters()).device
    x = torch.from_numpy(np.ascontiguousarray(batch)).to(device)  # (B, C, s, s)
    total = None
    with torch.inference_mode(), autocast(device, amp):
        for k, flip in DIHEDRAL if tta else DIHEDRAL[:1]:
            t = torch.rot90(x.flip(-1) if flip else x, k, dims=(-2, -1))
            prob = torch.rot90(torch.softmax(model(t).float(), dim=1), -k, dims=(-2, -1))
            prob = prob.flip(-1) if flip else prob
            total = prob if total is None else total + prob
    return (total / (len(DIHEDRAL) if tta else 1)).cpu().numpy()


def class_maps(prob):
    """Probability maps the instance step uses, from the soft-max of a two- or three-class model.

    Parameters
    ----------
    prob : numpy.ndarray of float32, shape (B, C, h, w)
        C = 2 (background, cell) or 3 (background, cell interior, cell border).

    Returns
    -------
    numpy.ndarray of float32, shape (B, K, h, w)
        K = 1: the foreground probability; K = 2: the foreground (interior +
        border) and the interior probability, the watershed's seed map.
    """
    if prob.shape[1] == 2:
        return prob[:, 1:2]
    return np.stack([prob[:, 1] + prob[:, 2], prob[:, 1]], axis=1)


def forward_plane(model, plane, tta=False):
    """Whole-plane maps of a normalised 2D plane: one forward pass over its mirror-padded extent.

    Parameters
    ----------
    model : tileunet.model.UNet
        In eval mode.
    plane : numpy.ndarray of float32, shape (Y, X), or (C, Y, X) for a model of C > 1 channels
        Already normalised (as the arrays of ``results/data``).
    tta : bool
        Average over the 8 flips and quarter turns (:func:`_forward`).

    Returns
    -------
    numpy.ndarray of float32, shape (K, Y, X)
        See :func:`class_maps`.

    Notes
    -----
    Padded by ``numpy.pad(mode="symmetric")``: the model margin before, the
    margin plus what reaches a valid size after (paper section 2, figure 2).
    """
    m = model.margin
    plane = _with_channels(model, plane)
    ny, nx = plane.shape[-2:]
    size = [model.input_size(smallest_output(model, n)) for n in (ny, nx)]
    padded = np.pad(plane, [(0, 0)] + [(m, s - n - m) for s, n in zip(size, (ny, nx))], mode="symmetric")
    return class_maps(_forward(model, padded[None], tta=tta))[0, :, :ny, :nx]


def _with_channels(model, plane):
    """One plane as (C, Y, X) for the model's C input channels; refuses another channel count."""
    plane = np.asarray(plane)
    channels = model.config.in_channels
    chw = plane[None] if channels == 1 and plane.ndim == 2 else plane
    if chw.ndim != 3 or chw.shape[0] != channels:
        raise ValueError(f"the model takes {channels} channel(s) per plane, (C, Y, X) = ({channels}, Y, X), "
                         f"got shape {plane.shape}")
    return chw


def predict_maps(model, image, tta=False):
    """:func:`forward_plane` of a raw 2D image (C, Y, X with channels), normalised as in training: (K, Y, X)."""
    image = _with_channels(model, image)
    check_image(image[0])  # shape and dtype of one channel
    low, high = normalization_params(model)
    lo, hi = (np.array(v).reshape(-1, 1, 1) for v in zip(*(intensity_range(c, low, high) for c in image)))
    return forward_plane(model, apply_range(image, lo, hi), tta)


def predict_image(model, image, tta=False):
    """Whole-image reference: one forward pass over the mirror-padded 2D image.

    Parameters
    ----------
    model : tileunet.model.UNet
        In eval mode; ``model.normalization`` gives the percentiles.
    image : array-like, shape (Y, X), or (C, Y, X) for a model of C > 1 channels
        Raw intensities.
    tta : bool
        Average over the 8 flips and quarter turns.

    Returns
    -------
    numpy.ndarray of float32, shape (Y, X)
        Foreground probability (soft-max of class 1; of classes interior and
        border for a border-class model).

    Notes
    -----
    Normalised per plane and channel as in training (:mod:`tileunet.normalize`),
    then :func:`forward_plane`.
    """
    return predict_maps(model, image, tta)[0]


def predict_tiles(model, image, plane, origins, tiling, lo, hi, amp=False, tta=False):
    """Maps of chunks ``origins`` = [(cy, cx), ...] of one plane, one forward pass.

    Returns
    -------
    list of numpy.ndarray of float32, each the chunk's (K, h, w), clipped at the slide edge
        K maps as :func:`class_maps`.
    """
    channels = model.config.in_channels
    lo, hi = (np.asarray(v, np.float64).reshape(-1, 1, 1) for v in (lo, hi))  # one range per channel
    batch = np.stack([apply_range(input_window(image, plane, cy, cx, tiling, channels), lo, hi) for cy, cx in origins])
    if not np.isfinite(batch).all():
        bad = [o for o, window in zip(origins, batch) if not np.isfinite(window).all()]
        raise ValueError(f"NaN or infinite pixels in the input windows of chunks (row, column) {bad} of plane {plane}")
    maps = class_maps(_forward(model, batch, amp, tta))
    out = []
    for (cy, cx), tile in zip(origins, maps):
        rows, cols = chunk_slices(image.shape[-2:], tiling.chunk, None, cy, cx)
        out.append(tile[(slice(None), *tiling.output_crop(rows.stop - rows.start, cols.stop - cols.start))])
    return out


def plane_maps(model, plane, tile, batch_size=4, tta=False):
    """Maps of one normalised 2D plane, tile by tile (equal to :func:`forward_plane`, in bounded memory).

    Parameters
    ----------
    model : tileunet.model.UNet
        In eval mode.
    plane : numpy.ndarray of float32, shape (Y, X), or (C, Y, X) for a model of C > 1 channels
        Already normalised (as the arrays of ``results/data``).
    tile : int
        Output tile edge (see :func:`plan_tiling`).
    batch_size : int
        Tiles per forward pass.
    tta : bool
        Average over the 8 flips and quarter turns.

    Returns
    -------
    numpy.ndarray of float32, shape (K, Y, X)
        See :func:`class_maps`.
    """
    t = plan_tiling(model, tile)
    shape = plane.shape[-2:]
    _, ny, nx = grid_of(shape, t.chunk)
    origins = [(cy, cx) for cy in range(ny) for cx in range(nx)]
    out = np.zeros((model.config.n_classes - 1,) + shape, np.float32)
    for i in range(0, len(origins), batch_size):
        batch = origins[i:i + batch_size]
        for (cy, cx), maps in zip(batch, predict_tiles(model, plane, None, batch, t, 0.0, 1.0, tta=tta)):
            out[(slice(None), *chunk_slices(shape, t.chunk, 0, cy, cx))] = maps
    return out


def plane_ranges(model, image):
    """Per-plane intensity range, read lazily (a strided sample of each plane).

    Returns
    -------
    list of (lo, hi)
        One pair per plane: floats, or lists of one float per channel for a model of C > 1 channels.
    """
    low, high = normalization_params(model)
    channels = model.config.in_channels
    lazy = da.from_array(image, chunks=(1,) * (image.ndim - 2) + (2048, 2048))
    planes = [lazy[p] for p in range(lazy.shape[0])] if lazy.ndim == (4 if channels > 1 else 3) else [lazy]
    if channels == 1:
        return [intensity_range(plane, low, high) for plane in planes]
    return [tuple(list(v) for v in zip(*(intensity_range(plane[c], low, high) for c in range(channels))))
            for plane in planes]
