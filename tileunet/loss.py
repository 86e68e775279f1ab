"""The paper's loss: pixel-wise soft-max cross-entropy weighted by the weight map (section 3, equation 1)."""

import torch
import torch.nn.functional as F


def weighted_cross_entropy(logits, target, weights, normalization="weighted_mean"):
    """Pixel-wise soft-max cross-entropy weighted per pixel (paper equation 1).

    Parameters
    ----------
    logits : torch.Tensor, (N, K, H, W)
        Network output; computed in float32 whatever its dtype.
    target : torch.Tensor of int, (N, H, W)
        Class per pixel, already cropped to the output window.
    weights : torch.Tensor, (N, H, W)
        The weight map w(x) over the same window (0 excludes a pixel).
    normalization : {"weighted_mean", "mean"}
        ``sum(w * ce) / sum(w)`` or ``sum(w * ce) / (N H W)``.

    Returns
    -------
    torch.Tensor, scalar float32

    Notes
    -----
    The paper states the energy as the sum ``E = -sum_x w(x) log p_l(x)(x)``;
    dividing by a constant per batch only rescales the learning rate. The
    weighted mean makes the step size independent of the tile size and of the
    border term's share of the tile.
    """
    return _reduce(_weighted_ce_map(logits, target, weights), weights, normalization)


def _weighted_ce_map(logits, target, weights):
    return F.cross_entropy(logits.float(), target, reduction="none") * weights.float()  # (N, H, W)


def _reduce(wce, weights, normalization):
    if normalization == "weighted_mean":
        return wce.sum() / weights.float().sum().clamp_min(torch.finfo(torch.float32).tiny)
    if normalization == "mean":
        return wce.mean()
    raise ValueError(f"loss normalization must be 'weighted_mean' or 'mean', got {normalization!r}")
