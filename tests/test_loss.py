"""The paper's weighted soft-max cross-entropy, against a hand computation."""

import math

import numpy as np
import pytest
import torch

from tileunet.loss import weighted_cross_entropy


def test_weighted_loss_hand_computed_3x3():
    # class-1 logit 0 or ln 3 against class-0 logit 0: p(correct) = 1/2, 3/4 or 1/4
    z = torch.tensor([[0.0, math.log(3), math.log(3)], [0.0, 0.0, math.log(3)], [math.log(3), 0.0, 0.0]])
    logits = torch.stack([torch.zeros(3, 3), z])[None]  # (1, 2, 3, 3)
    target = torch.tensor([[[1, 1, 0], [0, 1, 1], [0, 0, 1]]])
    w = torch.tensor([[[1.0, 2.0, 0.0], [1.0, 10.0, 1.0], [2.0, 1.0, 0.5]]])
    p = np.array([[1 / 2, 3 / 4, 1 / 4], [1 / 2, 1 / 2, 3 / 4], [1 / 4, 1 / 2, 1 / 2]])
    wce = -(w[0].numpy() * np.log(p))
    got = weighted_cross_entropy(logits, target, w).item()
    assert got == pytest.approx(wce.sum() / w.sum().item(), rel=1e-6)
    assert got == pytest.approx((13.5 * math.log(2) + 3 * math.log(4 / 3) + 2 * math.log(4)) / 18.5, rel=1e-6)
    assert weighted_cross_entropy(logits, target, w, "mean").item() == pytest.approx(wce.sum() / 9, rel=1e-6)
    assert weighted_cross_entropy(logits.bfloat16(), target, w).dtype == torch.float32
    with pytest.raises(ValueError, match="normalization"):
        weighted_cross_entropy(logits, target, w, "sum")
