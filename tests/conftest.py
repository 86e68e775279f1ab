"""Fixtures shared by the tests (and the benchmarks' tiny data): threads, training stores, running a script."""

import logging
import runpy
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import zarr

from synthetic import training_plane
from tileunet.io import write_array

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def one_thread():
    # Tiny convolutions gain nothing from threads, and OpenMP spinning on a shared 2-core box costs 10x.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def training_stores(tmp_path_factory):
    """augmented.zarr (2 samples x 2 copies) and one validation store of touching cells."""
    root = tmp_path_factory.mktemp("data")
    zarr.open_group(root / "augmented.zarr", mode="w", zarr_format=3).attrs.update({"seed": 0})
    for s in range(2):
        planes = [training_plane(10 * s + c) for c in range(2)]
        for name, arrays in zip(("image", "labels", "weights"), zip(*planes)):
            write_array(root / "augmented.zarr" / f"s{s}", name, np.stack(arrays))
    for name, array in zip(("image", "labels", "weights"), training_plane(99)):
        write_array(root / "val.zarr", name, array)
    return root / "augmented.zarr", root / "val.zarr"


def _run_script(name, **snakemake):
    """Run a Snakemake `script:` file with a stand-in `snakemake` object; undo its stderr and logging redirection."""
    root, stderr = logging.getLogger(), sys.stderr
    handlers, level = root.handlers[:], root.level
    try:
        # as Snakemake runs it: a file of its own, as __main__
        runpy.run_path(str(ROOT / "scripts" / name), init_globals={"snakemake": SimpleNamespace(**snakemake)},
                       run_name="__main__")
    finally:
        if sys.stderr is not stderr:
            sys.stderr.close()
            sys.stderr = stderr
        for handler in root.handlers[:]:
            if handler not in handlers:
                root.removeHandler(handler)
                handler.close()
        root.handlers[:], root.level = handlers, level


@pytest.fixture
def run_script():
    """``run_script("predict.py", input=..., output=..., ...)``: one script as Snakemake runs it."""
    return _run_script
