"""The resumable training checkpoint: every RNG state, atomic writes, and what a resume must match.

A checkpoint stores model, optimiser, schedule, moving average, iteration
(which is the whole sampler state, see :mod:`tileunet.tiles`), metrics
rows, the best validation and every RNG state, so a killed run resumes to
the bit.  Distinct from ``model.pt`` (:func:`tileunet.model.save_model`),
which holds what inference needs.
"""

import dataclasses
import hashlib
import random
from pathlib import Path

import numpy as np
import torch

from .io import atomic_path

# Keys that change the trajectory of the weights; the others (how often to
# validate or save, where and how fast to run) may change between a run and its resume.
_RESUME_IGNORES = ("device", "val_interval", "val_tiles", "checkpoint_interval", "compile", "workers",
                   "channels_last", "iterations", "select", "tune", "ensemble")


def rng_state():
    """Every RNG state a training step may touch (torch CPU and CUDA, numpy, Python)."""
    np_state = np.random.get_state()
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
            "python": random.getstate()}


def set_rng_state(state):
    """Restore :func:`rng_state`'s output."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), *rest))
    random.setstate(_tuples(state["python"]))


def _tuples(x):
    return tuple(_tuples(v) for v in x) if isinstance(x, (list, tuple)) else x


def save_checkpoint(path, payload):
    """torch.save ``payload`` to ``path`` atomically (a kill never leaves half a file)."""
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def read_checkpoint(path):
    """The checkpoint dict at ``path``, or None if there is none."""
    path = Path(path)
    if not path.exists():
        return None
    return torch.load(path, map_location="cpu", weights_only=True)


def fingerprint(model_config, cfg, seed, data):
    """What must match for a checkpoint to be resumed: model, seed, data and trajectory-changing options.

    ``iterations`` counts only for the cosine schedule (its period), so a
    constant-rate run can be extended by raising it.
    """
    train = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in _RESUME_IGNORES}
    if cfg.schedule == "cosine":
        train["iterations"] = cfg.iterations
    return {"model": dict(model_config), "train": train, "seed": int(seed), "data": str(data)}


def data_fingerprint(*stores):
    """Hash of the stores a training reads: every stored file's name and bytes.

    A corrected label or image changes no shape and no attribute, only
    chunk bytes; a checkpoint made on the old data must not be resumed then
    (it would deliver a network trained on it).  Reading every file once
    costs less than one pass of training over them (about 2 s for the
    demo's 250 MB).  Hidden files (``.DS_Store``, ``.nfs*``) do not count.

    Parameters
    ----------
    *stores : path
        Directory stores: ``results/augmented.zarr``, then the validation
        stores (they choose the kept weights).

    Returns
    -------
    str
        Hex SHA-256.
    """
    digest = hashlib.sha256()
    for store in map(Path, stores):
        digest.update(f"store {store.name}\0".encode())
        for path in sorted(p for p in store.rglob("*") if p.is_file()
                           and not any(part.startswith(".") for part in p.relative_to(store).parts)):
            with open(path, "rb") as f:
                content = hashlib.file_digest(f, "sha256").digest()
            digest.update(f"{path.relative_to(store).as_posix()}\0".encode() + content)
    return digest.hexdigest()
