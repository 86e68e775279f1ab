"""tileunet.checkpoint: RNG states restored to the bit, atomic writes, and what a resume must match."""

import random

import numpy as np
import pytest
import torch

from tileunet.checkpoint import fingerprint, read_checkpoint, rng_state, save_checkpoint, set_rng_state
from tileunet.train import TrainConfig


def _draws():
    return torch.rand(3).tolist(), np.random.rand(3).tolist(), [random.random() for _ in range(3)]


def test_rng_state_survives_a_checkpoint_and_replays_the_same_draws(tmp_path):
    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    save_checkpoint(tmp_path / "c.pt", {"rng": rng_state()})
    expected = _draws()
    _draws()  # move every generator on
    set_rng_state(read_checkpoint(tmp_path / "c.pt")["rng"])
    assert _draws() == expected


def test_missing_checkpoint_reads_as_none(tmp_path):
    assert read_checkpoint(tmp_path / "none.pt") is None


def test_a_failed_save_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "c.pt"
    save_checkpoint(path, {"iteration": 1})

    def broken(obj, f):
        open(f, "wb").write(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken)
    with pytest.raises(OSError):
        save_checkpoint(path, {"iteration": 2})
    assert read_checkpoint(path) == {"iteration": 1} and [p.name for p in tmp_path.iterdir()] == ["c.pt"]


def test_fingerprint_holds_what_changes_the_weights_and_nothing_else():
    def fp(**kw):
        return fingerprint({"depth": 3}, TrainConfig.from_dict(kw), 0, "abc")

    assert fp() == fp(device="cpu", val_interval=7, workers=3, iterations=99)  # where and how often only
    assert fp() == fp(ensemble=3)  # how many networks are trained does not change one of them
    assert fp() != fp(lr=0.5) and fp() != fingerprint({"depth": 4}, TrainConfig.from_dict({}), 0, "abc")
    assert fp() != fingerprint({"depth": 3}, TrainConfig.from_dict({}), 1, "abc")
    # a cosine schedule's period is its iteration count: changing it changes the trajectory
    assert fp(schedule="cosine", iterations=10) != fp(schedule="cosine", iterations=20)
