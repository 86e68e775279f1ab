"""Validation during training: the loss and foreground IoU of fixed tiles, and instance F1 of whole planes."""

import logging

import torch
import zarr

from .augment import AugmentParams, augment_pair, copy_rng, draw_transform
from .device import autocast
from .geometry import check_input_size
from .loss import _weighted_ce_map
from .postprocess import tune, warn_ties
from .predict import plane_maps
from .tiles import validation_planes

log = logging.getLogger(__name__)

COPIES_KEY = "validation copies"
"""Sample key of the augmented validation copies (:func:`augmented_copies`); no sample name holds a space."""


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


def augmented_copies(planes, augmented, copies):
    """Augmented copies of the validation planes, drawn as the training set's (:mod:`tileunet.augment`).

    They break the ties of the post-processing search
    (:func:`tileunet.postprocess.tune`): candidates that cut the validation
    planes identically may differ on the same cells deformed, dimmed and
    noised.  Drawn from the validation planes only, with the augmented
    store's seed and parameters, so they are the same for every validation
    and every run with that seed.

    Parameters
    ----------
    planes : list of (image, labels)
        As :func:`tileunet.tiles.validation_planes`.
    augmented : path
        ``results/augmented.zarr``, whose root attributes hold ``seed``,
        ``augment`` and ``weights`` (for ``separate_touching``).
    copies : int
        Copies per plane (0: none).

    Returns
    -------
    list of (image float32, labels int32)
        ``copies`` per plane, plane-major; copy ``c`` of plane ``k`` draws
        from ``copy_rng(seed, COPIES_KEY, k, c)``.
    """
    if not copies or not planes:
        return []
    attrs = zarr.open_group(augmented, mode="r").attrs
    if "augment" not in attrs or "seed" not in attrs:
        log.warning("%s records no augment parameters or no seed (it was not written by tileunet's augment "
                    "stage); the validation copies take the schema's defaults and seed 0 where missing", augmented)
    params, seed = AugmentParams.from_config(attrs.get("augment")), attrs.get("seed", 0)
    separate = bool((attrs.get("weights") or {}).get("separate_touching", False))
    return [augment_pair(image, labels, draw_transform(params, copy_rng(seed, COPIES_KEY, k, c)), separate)
            for k, (image, labels) in enumerate(planes) for c in range(int(copies))]


def maps_of(model, planes, tile, batch_size=4, tta=False):
    """(foreground, seed map or None, labels) of each (image, labels) plane, by the tiled forward pass.

    ``tta``: the average of the 8 flips and quarter turns (:func:`tileunet.predict.plane_maps`).
    """
    out = []
    for image, labels in planes:
        m = plane_maps(model, image, tile, batch_size, tta)
        out.append((m[0], m[1] if len(m) > 1 else None, labels))
    return out


def validate_instances(model, planes, tile, cfg, batch_size=4, tie_planes=(), tta=False):
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
    batch_size : int
    tie_planes : list of (image, labels)
        Augmented copies of ``planes`` (:func:`augmented_copies`) that rank
        the candidates tied on them.
    tta : bool
        Search on the 8-pass test-time-augmented maps (``train.tune.tta``).

    Returns
    -------
    (dict, (float, float))
        :func:`tileunet.postprocess.tune`'s result and the chosen method's (F1, IoU) on ``planes``.
    """
    was_training = model.training
    model.eval()
    maps, extra = (maps_of(model, p, tile, batch_size, tta) for p in (planes, tie_planes))
    model.train(was_training)
    tuned = tune(maps, cfg.tune, tie_planes=extra)
    best = tuned[tuned["chosen"]]
    return tuned, (best["val_f1"], best["val_iou"])


def validate_stores(model, val_stores, cfg, augmented=None):
    """:func:`validate_instances` of a trained model on the whole planes of the validation stores.

    Used where the post-processing is chosen after training (an ensemble's
    members, :mod:`tileunet.ensemble`); output tiles of the training tile's
    size, as during training.  ``augmented`` (``results/augmented.zarr``)
    gives the copies that break ties (:func:`augmented_copies`); None: none.

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
    copies = [] if augmented is None else augmented_copies(planes, augmented, cfg.tune["copies"])
    tuned, score = validate_instances(model, planes, tile, cfg, cfg.batch_size, copies, bool(cfg.tune.get("tta")))
    log.info("validation instance F1 %.3f, foreground IoU %.3f with %s", *score, tuned[tuned["chosen"]])
    warn_ties(tuned)
    return tuned, score
