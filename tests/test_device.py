"""tileunet.device: the CPU float mode (device choice and autocast: tests/test_train.py)."""

import pytest
import torch

from tileunet.device import flushed_denormals, flushes_denormals


def test_flushed_denormals_flushes_inside_and_restores_the_mode_after():
    if not torch.set_flush_denormal(False):
        pytest.skip("this CPU cannot flush subnormal floats")
    assert not flushes_denormals()
    with flushed_denormals() as supported:
        assert supported and flushes_denormals()
    assert not flushes_denormals()
    with pytest.raises(RuntimeError), flushed_denormals():
        raise RuntimeError
    assert not flushes_denormals()

