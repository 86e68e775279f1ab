"""Validation during training: the loss and foreground IoU of fixed tiles, and instance F1 of whole planes."""

import logging

import torch

from .device import autocast
from .geometry import check_input_size
from .loss import _weighted_ce_map
from .postprocess import tune, warn_ties
from .predict import plane_maps
from .tiles import validation_planes

log = logging.getLogger(__name__)


@torch.no_grad()
def evaluate(model, val, batch_size, device, amp=False, normalization="weighted_mean", channels_last=False):
    """Loss and foreground IoU over fixed validation tiles.

    Parameters
    ----------
    model : UNet
    val : tuple of torch.Tensor
        image (T, C, h, w), target (T, H, W), weights (T, H, W) as from
        :func:`tileunet.tiles.validation_tiles`; pixels of weight 0 are ignored.

    Returns
    -------
    (float, float)
        Loss normalised over all tiles as in training, and the IoU of
        predicted (argmax not background) against true foreground.
    """
    was_training = model.training
    model.eval()
    wce_sum = w_sum = count = inter = union = 0.0
    for k in range(0, len(val[0]), batch_size):
        x, y, w = (t[k:k + batch_size].to(device) for t in val)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(device, amp):
            logits = model(x)
        wce_sum += _weighted_ce_map(logits, y, w).sum().item()
        w_sum += w.sum().item()
        count += w.numel()
        inside = w > 0
        pred, true = (logits.argmax(1) > 0) & inside, (y > 0) & inside
        inter += (pred & true).sum().item()
        union += (pred | true).sum().item()
    model.train(was_training)
    loss = wce_sum / max(w_sum, 1e-30) if normalization == "weighted_mean" else wce_sum / max(count, 1)
    return loss, (inter / union if union else 1.0)


def validate_instances(model, planes, tile, cfg, batch_size=4):
    """Instance F1 of ``model`` on whole validation planes, with the post-processing tuned on them.

    Parameters
    ----------
    model : UNet
    planes : list of (image, labels)
        Normalised (Y, X) planes and their instance labels (:func:`tileunet.tiles.validation_planes`).
    tile : int
        Output tile edge for the tiled forward pass.
    cfg : TrainConfig
        ``tune`` is the grid of :func:`tileunet.postprocess.tune`.

    Returns
    -------
    (dict, (float, float))
        :func:`tileunet.postprocess.tune`'s result and the chosen method's (F1, IoU).
    """
    was_training = model.training
    model.eval()
    maps = [plane_maps(model, image, tile, batch_size) for image, _ in planes]
    model.train(was_training)
    tuned = tune([(m[0], m[1] if len(m) > 1 else None, labels) for m, (_, labels) in zip(maps, planes)], cfg.tune)
    best = tuned[tuned["chosen"]]
    return tuned, (best["val_f1"], best["val_iou"])


def validate_stores(model, val_stores, cfg):
    """:func:`validate_instances` of a trained model on the whole planes of the validation stores.

    Used where the post-processing is chosen after training (an ensemble's
    members, :mod:`tileunet.ensemble`); output tiles of the training tile's
    size, as during training.

    Returns
    -------
    (dict or None, (float, float) or None)
        As :func:`validate_instances`; (None, None) without validation planes.
    """
    planes = validation_planes(val_stores)
    if not planes:
        log.warning("no validation samples: no post-processing is chosen (predict then needs it in the config)")
        return None, None
    tile = check_input_size(cfg.tile_size, model.config.depth, model.config.padding)
    tuned, score = validate_instances(model, planes, tile, cfg, cfg.batch_size)
    log.info("validation instance F1 %.3f, foreground IoU %.3f with %s", *score, tuned[tuned["chosen"]])
    warn_ties(tuned)
    return tuned, score
