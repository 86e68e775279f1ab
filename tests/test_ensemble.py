"""Ensembles: the mean soft-max of the members, one model.pt, and everything built for one U-Net running it."""

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from synthetic import blob_slide as slide
from synthetic import tiny_unet as tiny
from tileunet import predict
from tileunet.ensemble import Ensemble, join
from tileunet.model import load_model, read_model_file, save_model
from tileunet.normalize import normalize_plane
from tileunet.tables import read_tsv
from tileunet.train import write_metrics


def members(n=3, n_classes=2):
    return [tiny(3, seed=seed, n_classes=n_classes) for seed in range(n)]


@pytest.mark.parametrize("n_classes", [2, 3])
def test_ensemble_output_is_the_log_of_the_mean_softmax(n_classes):
    nets = members(n_classes=n_classes)
    x = torch.randn(2, 1, nets[0].input_size(12), nets[0].input_size(12))
    with torch.no_grad():
        out = Ensemble(nets)(x)
        mean = torch.stack([torch.softmax(m(x), 1) for m in nets]).mean(0)
    assert out.shape == (2, n_classes, 12, 12) and out.dtype == torch.float32
    torch.testing.assert_close(torch.softmax(out, 1), mean, rtol=0, atol=1e-6)
    assert torch.equal(out.argmax(1), mean.argmax(1))
    assert (torch.softmax(out, 1) - torch.softmax(nets[0](x), 1)).abs().max() > 1e-3  # not member 0 alone


def test_tiled_prediction_of_an_ensemble_is_the_members_mean_and_equals_the_whole_image():
    nets = members()
    ens = Ensemble(nets)
    ens.normalization = nets[0].normalization
    plane = normalize_plane(slide((61, 45), seed=2)).astype(np.float32)
    ref = predict.forward_plane(ens, plane)
    np.testing.assert_allclose(ref, np.mean([predict.forward_plane(m, plane) for m in nets], 0), rtol=0, atol=1e-6)
    np.testing.assert_allclose(predict.plane_maps(ens, plane, 28, batch_size=3), ref, rtol=0, atol=1e-5)
    np.testing.assert_allclose(predict.predict_image(ens, slide((61, 45), seed=2)), ref[0], rtol=0, atol=1e-6)


def test_ensemble_model_file_round_trip(tmp_path):
    nets = members(2)
    path = tmp_path / "model.pt"
    save_model(path, Ensemble(nets), nets[0].normalization, extra={"members": 2, "postprocessing": None})
    loaded = load_model(path)
    assert isinstance(loaded, Ensemble) and len(loaded.members) == 2 and not loaded.training
    assert loaded.margin == nets[0].margin and loaded.normalization == nets[0].normalization
    x = torch.randn(1, 1, 44, 44)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), Ensemble(nets)(x), rtol=0, atol=0)
    assert read_model_file(path)["members"] == 2


def test_members_of_another_architecture_or_normalisation_are_refused():
    with pytest.raises(ValueError, match="architecture"):
        Ensemble([tiny(3), tiny(2)])
    with pytest.raises(ValueError, match="at least one"):
        Ensemble([])
    odd = tiny(3, seed=1)
    odd.normalization = {"method": "percentile", "low": 5.0, "high": 50.0}
    for m in (a := tiny(3), odd):
        m.channels = None
    with pytest.raises(ValueError, match=r"b/model.pt: its normalization .* differs from a/model.pt.*Fix"):
        join([a, odd], ["a/model.pt", "b/model.pt"])
    joined = join([a, tiny(3, seed=2)], ["a/model.pt", "c/model.pt"])
    assert joined.normalization == a.normalization and joined.channels is None


@pytest.mark.parametrize("with_val", [True, False])
def test_the_join_script_writes_the_ensemble_its_postprocessing_metrics_and_curve(training_stores, tmp_path,
                                                                                 run_script, with_val):
    augmented, val = training_stores
    paths, metrics = [], []
    for k, net in enumerate(members(2)):
        paths.append(tmp_path / f"m{k}" / "model.pt")
        save_model(paths[-1], net, net.normalization, extra={"seed": 1000 * k, "iterations": 5, "channels": None})
        metrics.append(tmp_path / f"m{k}" / "metrics.tsv")
        write_metrics(metrics[-1], [{"iteration": i, "loss": 1.0 / i, "val_loss": None, "val_iou": None,
                                     "val_f1": None, "lr": 0.1, "tiles_per_s": 2.0} for i in (1, 2)])
    out = SimpleNamespace(model=str(tmp_path / "model.pt"), metrics=str(tmp_path / "metrics.tsv"),
                          curve=str(tmp_path / "loss.png"))
    # min_size 0 and 1 keep the same cells: validation cannot tell the two apart, which the join must say
    train_cfg = {"device": "cpu", "tile_size": 60, "tune": {"thresholds": [0.5], "min_sizes": [0, 1]}}
    run_script("ensemble.py", input=SimpleNamespace(members=[str(p) for p in paths], metrics=[str(p) for p in metrics],
                                                    augmented=str(augmented / "zarr.json")),
               output=out, params=SimpleNamespace(val_stores=[str(val)] if with_val else [], train=train_cfg),
               threads=1, log=[str(tmp_path / "join.log")])
    stored = read_model_file(out.model)
    assert stored["members"] == 2 and stored["seeds"] == [0, 1000] and isinstance(load_model(out.model), Ensemble)
    assert (stored["postprocessing"] or {}).get("chosen") in (("components", "watershed") if with_val else (None,))
    if with_val:  # the augmented validation copies broke the ties (train.tune.copies: 2 by default)
        assert "aug_ties" in stored["postprocessing"][stored["postprocessing"]["chosen"]]
    rows = read_tsv(out.metrics)
    assert [r["member"] for r in rows] == [0, 0, 1, 1] + (["ensemble"] if with_val else [])
    assert Path(out.curve).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    log = (tmp_path / "join.log").read_text()
    assert ("no validation samples" in log) != with_val
    assert ("score the same on the validation images" in log) == with_val
