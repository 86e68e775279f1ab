"""tileunet.device: device choice, autocast and the CPU float mode."""

import pytest
import torch

from tileunet.device import autocast, flushed_denormals, flushes_denormals, select_device


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


def test_device_selection_and_autocast():
    assert select_device("cpu").type == "cpu"
    assert select_device("auto").type in ("cuda", "mps", "cpu")
    with pytest.raises(ValueError, match="unknown"):
        select_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA"):
            select_device("cuda")
    with autocast("cpu", True):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32  # no CPU autocast
