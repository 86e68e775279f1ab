"""Device choice and mixed precision, decided in one place.

``select_device("auto")`` picks CUDA, then Apple MPS, then the CPU; an
explicit name that is not available is refused with the fix.
``autocast(device, enabled)`` is bf16 autocast on CUDA and a no-op context
elsewhere, so training and inference code reads the same on every device.
"""

import contextlib

import torch

DEVICE_NAMES = ("auto", "cpu", "cuda", "mps")


def _mps_available():
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def select_device(name="auto"):
    """The torch device for a config name.

    Parameters
    ----------
    name : {"auto", "cpu", "cuda", "mps"} or str
        ``"auto"`` picks cuda, then mps, then cpu; ``"cuda:1"`` names a GPU.

    Returns
    -------
    torch.device

    Raises
    ------
    ValueError
        If the name is unknown or the device is not available here.

    Examples
    --------
    >>> select_device("cpu")
    device(type='cpu')
    """
    name = str(name)
    kind = name.split(":")[0]
    if kind not in DEVICE_NAMES:
        raise ValueError(f"device {name!r} is unknown. Fix: use one of {', '.join(DEVICE_NAMES)}")
    if kind == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if _mps_available() else "cpu")
    if kind == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but this torch ({torch.__version__}) sees no CUDA GPU. "
                         "Fix: set device: auto or cpu, or run on a GPU node with a CUDA build of torch")
    if kind == "mps" and not _mps_available():
        raise ValueError(f"device {name!r} requested but Apple MPS is not available. Fix: set device: auto or cpu")
    return torch.device(name)


def autocast(device, enabled=True):
    """bf16 autocast context on CUDA; a ``nullcontext`` on CPU, MPS or when disabled.

    CPU autocast is left off on purpose: bf16 matmuls are slower than fp32 on
    most CPUs and would change results against the fp32 reference.

    Parameters
    ----------
    device : torch.device or str
    enabled : bool
    """
    device = torch.device(device)
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def configure(device, deterministic=False):
    """Per-device backend switches: cuDNN autotuning and TF32 on CUDA.

    Parameters
    ----------
    device : torch.device
    deterministic : bool
        On CUDA, turn autotuning off and ask for deterministic kernels instead.
    """
    if torch.device(device).type == "cuda":
        torch.backends.cudnn.benchmark = not deterministic
        torch.backends.cudnn.deterministic = deterministic
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


SUBNORMAL = 1e-39  # float32: below the smallest normal number, 1.18e-38


def flushes_denormals():
    """Whether this thread's CPU arithmetic flushes subnormal float32 to zero (FTZ/DAZ)."""
    return (torch.tensor([SUBNORMAL]) * 1.0).item() == 0.0


@contextlib.contextmanager
def flushed_denormals():
    """Flush subnormal floats to zero on the CPU for the block, then restore the previous mode.

    As the network grows confident, gradients of well-classified pixels
    underflow to subnormal floats, which x86 CPUs process about 100x slower:
    the demo's CPU training fell from 10.5 to 3.5 tiles/s after ~500
    iterations.  Flushing changes only values below 1.2e-38.  The mode is per
    thread and OpenMP workers inherit it when they are created (POSIX), so
    enter this before the first parallel torch op of the process; workers
    created inside keep the mode afterwards.  GPUs are not affected.

    Yields
    ------
    bool
        Whether the CPU supports flushing (x86 with SSE3, recent ARM).
    """
    was = flushes_denormals()
    supported = torch.set_flush_denormal(True)
    try:
        yield supported
    finally:
        torch.set_flush_denormal(was)
