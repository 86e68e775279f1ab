"""tileunet.validation: the loss and IoU of fixed tiles, and instance F1 of whole planes."""

import numpy as np
import pytest
import torch
import zarr
from torch import nn

from tileunet import validation
from tileunet.augment import AugmentParams
from tileunet.train import TrainConfig
from tests.synthetic import tiny_unet


class Oracle(nn.Module):
    """Logits (background, cell) = (-s x, s x) of the input's first channel: cells where x > 0."""

    def __init__(self, sharpness):
        super().__init__()
        self.sharpness = sharpness

    def forward(self, x):
        return torch.cat([-self.sharpness * x, self.sharpness * x], dim=1)


def _tiles(seed=0, n=5, size=12):
    rng = np.random.default_rng(seed)
    target = torch.from_numpy(rng.integers(0, 2, (n, size, size)))
    weights = torch.from_numpy(rng.uniform(0.5, 3.0, (n, size, size)).astype(np.float32))
    return target, weights


@pytest.mark.parametrize("batch_size", [1, 2, 5])
def test_loss_and_iou_of_a_known_prediction(batch_size):
    target, weights = _tiles()
    x = (2 * target - 1).float()[:, None]            # predicts every pixel right, logits +-1
    x[:, :, :, :3] = 1.0                             # ... except three columns called cell
    weights[:, :, -2:] = 0.0                         # two ignored columns
    loss, iou = validation.evaluate(Oracle(1.0), (x, target, weights), batch_size, "cpu")

    logits = torch.cat([-x, x], 1)
    ce = nn.functional.cross_entropy(logits, target, reduction="none")
    assert loss == pytest.approx(float((ce * weights).sum() / weights.sum()), rel=1e-6)
    inside = weights > 0
    pred, true = (x[:, 0] > 0) & inside, (target > 0) & inside
    assert iou == pytest.approx(float((pred & true).sum() / (pred | true).sum()))
    unweighted, _ = validation.evaluate(Oracle(1.0), (x, target, weights), batch_size, "cpu", normalization="mean")
    assert unweighted == pytest.approx(float((ce * weights).sum() / weights.numel()), rel=1e-6)


def test_a_perfect_prediction_has_iou_one_and_the_mode_is_restored():
    target, weights = _tiles(1)
    model = Oracle(50.0).train()
    loss, iou = validation.evaluate(model, ((2 * target - 1).float()[:, None], target, weights), 2, "cpu")
    assert iou == 1.0 and loss < 1e-6 and model.training


def test_instance_f1_is_that_of_the_tuned_postprocessing(monkeypatch):
    labels = np.zeros((40, 40), np.int32)
    labels[5:15, 5:15], labels[20:32, 22:35] = 1, 2
    # the network's maps replaced by the true foreground: two separate cells, found exactly
    monkeypatch.setattr(validation, "plane_maps",
                        lambda model, image, tile, batch, tta=False: (labels > 0)[None].astype(np.float32))
    model = tiny_unet().train()
    tuned, (f1, iou) = validation.validate_instances(model, [(np.zeros((40, 40), np.float32), labels)], 16,
                                                     TrainConfig.from_dict({}))
    assert (f1, iou) == (tuned[tuned["chosen"]]["val_f1"], tuned[tuned["chosen"]]["val_iou"])
    assert f1 == 1.0 and iou == pytest.approx(1.0) and model.training


def _augmented_store(path, seed=3, **params):
    attrs = {"seed": seed, "augment": {**vars(AugmentParams.from_config({})), **params},
             "weights": {"separate_touching": True}}
    zarr.open_group(path, mode="w", zarr_format=3).attrs.update(attrs)
    return path


def test_augmented_copies_are_drawn_as_the_training_set_from_its_seed(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.zeros((48, 56), np.int32)
    labels[8:20, 6:30], labels[20:34, 10:40] = 1, 2  # touching cells
    planes = [(rng.random((48, 56), dtype=np.float32), labels),
              (rng.random((48, 56), dtype=np.float32), labels[::-1].copy())]
    store = _augmented_store(tmp_path / "a.zarr", elastic_p=1.0, noise_p=1.0)
    copies = validation.augmented_copies(planes, store, 3)
    assert len(copies) == 6 and all(c[0].shape == (48, 56) and c[1].dtype == np.int32 for c in copies)
    again = validation.augmented_copies(planes, store, 3)
    assert all(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) for a, b in zip(copies, again))
    assert not np.array_equal(copies[0][0], copies[1][0])  # each copy its own draw
    assert all(set(np.unique(c[1])) <= {0, 1, 2} for c in copies)
    other = validation.augmented_copies(planes, _augmented_store(tmp_path / "b.zarr", seed=4, elastic_p=1.0,
                                                                 noise_p=1.0), 3)
    assert not np.array_equal(other[0][0], copies[0][0])  # the store's seed is used
    assert validation.augmented_copies(planes, store, 0) == []


def test_augmented_copies_without_any_augmentation_are_the_planes(tmp_path):
    off = {k: 0.0 for k in vars(AugmentParams.from_config({})) if k.endswith("_p")}
    labels = np.zeros((30, 30), np.int32)
    labels[5:12, 5:12], labels[15:25, 12:20] = 1, 2  # apart: carving leaves them as they are
    image = np.random.default_rng(1).random((30, 30), dtype=np.float32)
    [(im, lab)] = validation.augmented_copies([(image, labels)], _augmented_store(tmp_path / "a.zarr", **off), 1)
    assert np.array_equal(im, image) and np.array_equal(lab, labels)
