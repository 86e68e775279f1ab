"""Training: convergence, resume to the bit, the delivered weights and their post-processing, guards."""

import dataclasses
import math
import os
import shutil
import signal

import numpy as np
import pytest
import torch
import zarr

from tileunet.config import defaults, load_schema
from tileunet.checkpoint import read_checkpoint
from tileunet.device import flushes_denormals
from tileunet.errors import InputError
from tileunet import validation
from tileunet.model import UNet, check_input_size
from tileunet.plots.train import loss_curve
from tileunet.targets import border_classes
from tileunet.tiles import TileReader, augmented_planes, validation_planes
from tileunet.io import write_array
from tileunet.interrupts import Interrupted, NonFiniteLossError
from tileunet.train import METRIC_COLUMNS, TrainConfig, train, write_metrics
from tileunet.training_run import CHECKPOINT

TINY = {"depth": 2, "base_channels": 4, "dropout": 0.2}
TINY_TRAIN = {"device": "cpu", "iterations": 6, "tile_size": 28, "batch_size": 2, "optimizer": "sgd", "lr": 0.01,
              "momentum": 0.99, "val_interval": 3, "val_tiles": 2, "checkpoint_interval": 2, "workers": 0}



# --- training ----------------------------------------------------------------------------------------

def test_training_reaches_validation_iou_on_touching_cells(training_stores, tmp_path):
    augmented, val = training_stores
    cfg = {"device": "cpu", "iterations": 80, "tile_size": 60, "batch_size": 4, "optimizer": "adam", "lr": 0.01,
           "val_interval": 40, "val_tiles": 8, "checkpoint_interval": 80, "workers": 0}
    model, history = train(augmented, [val], {"depth": 2, "base_channels": 8, "dropout": 0.0}, cfg,
                           tmp_path / "ckpt", seed=0, progress=False)
    assert history[-1]["iteration"] == 80 and history[-1]["val_iou"] >= 0.95, history
    assert history[-1]["loss"] < history[0]["loss"] / 5
    chosen = model.postprocessing[model.postprocessing["chosen"]]
    assert chosen["aug_ties"] >= 1 and 0 <= chosen["aug_f1"] <= 1  # ties broken on the validation copies
    write_metrics(tmp_path / "metrics.tsv", history)
    lines = (tmp_path / "metrics.tsv").read_text().splitlines()
    assert lines[0].split("\t") == list(METRIC_COLUMNS) and len(lines) == len(history) + 1
    assert lines[1].split("\t")[2] == "" and float(lines[-1].split("\t")[3]) >= 0.95
    loss_curve(history, tmp_path / "loss.png")
    assert (tmp_path / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def _assert_identical(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def _no_speed(row):
    return {k: v for k, v in row.items() if k != "tiles_per_s"}


def _kill_at(iteration, signum=signal.SIGTERM):
    def hook(it, model):
        if it == iteration:
            os.kill(os.getpid(), signum)
    return hook


def test_training_flushes_subnormal_floats_and_restores_the_mode(training_stores, tmp_path):
    if not torch.set_flush_denormal(False):
        pytest.skip("this CPU cannot flush subnormal floats")
    augmented, val = training_stores
    seen = []
    train(augmented, [val], TINY, TINY_TRAIN, tmp_path / "f", progress=False,
          on_step=lambda it, model: seen.append(flushes_denormals()))
    assert seen and all(seen)
    assert not flushes_denormals()


def test_kill_and_resume_gives_identical_weights(training_stores, tmp_path):
    augmented, val = training_stores
    whole, rows = train(augmented, [val], TINY, TINY_TRAIN, tmp_path / "a", seed=5, progress=False)
    previous = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Interrupted, match="SIGTERM at iteration 3"):
        train(augmented, [val], TINY, TINY_TRAIN, tmp_path / "b", seed=5, progress=False, on_step=_kill_at(3))
    assert signal.getsignal(signal.SIGTERM) is previous  # handlers restored
    assert read_checkpoint(tmp_path / "b" / CHECKPOINT)["iteration"] == 3
    resumed, history = train(augmented, [val], TINY, TINY_TRAIN, tmp_path / "b", seed=5, progress=False)
    _assert_identical(_state(whole), _state(resumed))
    assert [r["iteration"] for r in history if r["val_iou"] is not None] == [3, 6]
    # the metrics rows too, but for the measured speed: no extra row for the kill, the same losses after it
    assert [_no_speed(r) for r in history] == [_no_speed(r) for r in rows]
    # SIGINT (Ctrl-C) too, and a rerun with a larger budget extends a finished run (constant schedule)
    with pytest.raises(Interrupted, match="SIGINT at iteration 1"):
        train(augmented, [val], TINY, {**TINY_TRAIN, "iterations": 4}, tmp_path / "c", seed=5, progress=False,
              on_step=_kill_at(1, signal.SIGINT))
    train(augmented, [val], TINY, {**TINY_TRAIN, "iterations": 4}, tmp_path / "c", seed=5, progress=False)
    extended, _ = train(augmented, [val], TINY, TINY_TRAIN, tmp_path / "c", seed=5, progress=False)
    _assert_identical(_state(whole), _state(extended))


def test_sigkill_and_resume_gives_identical_weights_and_metrics(training_stores, tmp_path):
    """SIGKILL runs no handler: the rerun resumes from the last periodic checkpoint to the same weights and rows."""
    import subprocess
    import sys
    augmented, val = training_stores
    whole, rows = train(augmented, [val], TINY, TINY_TRAIN, tmp_path / "a", seed=5, progress=False)
    killed = subprocess.run([sys.executable, "-c", f"""
import os, signal, torch
from tileunet.train import train
torch.set_num_threads(1)  # as the one_thread fixture here: another reduction order would differ in the last bits
train({str(augmented)!r}, [{str(val)!r}], {TINY!r}, {TINY_TRAIN!r}, {str(tmp_path / "b")!r}, seed=5, progress=False,
      on_step=lambda it, model: it == 5 and os.kill(os.getpid(), signal.SIGKILL))
"""], capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert read_checkpoint(tmp_path / "b" / CHECKPOINT)["iteration"] == 4  # the last one before the kill
    resumed, history = train(augmented, [val], TINY, TINY_TRAIN, tmp_path / "b", seed=5, progress=False)
    _assert_identical(_state(whole), _state(resumed))
    assert [_no_speed(r) for r in history] == [_no_speed(r) for r in rows]


def test_checkpoint_of_another_setup_is_not_resumed(training_stores, tmp_path, caplog):
    augmented, val = training_stores
    cfg = {**TINY_TRAIN, "iterations": 2}
    first, _ = train(augmented, [val], TINY, cfg, tmp_path / "c", seed=5, progress=False)
    fresh, _ = train(augmented, [val], TINY, {**cfg, "lr": 0.02}, tmp_path / "d", seed=5, progress=False)
    with caplog.at_level("WARNING"):
        changed, _ = train(augmented, [val], TINY, {**cfg, "lr": 0.02}, tmp_path / "c", seed=5, progress=False)
    assert "different ['train']" in caplog.text
    _assert_identical(_state(fresh), _state(changed))


def test_checkpoint_of_other_pixels_is_not_resumed_and_hidden_files_do_not_count(training_stores, tmp_path,
                                                                                 caplog):
    """A corrected label changes no shape or attribute: a resume must still see it (and a Finder file must not)."""
    cfg = {**TINY_TRAIN, "iterations": 2}
    data = tmp_path / "data"
    shutil.copytree(training_stores[0].parent, data)
    augmented, val = data / training_stores[0].name, data / training_stores[1].name
    train(augmented, [val], TINY, cfg, tmp_path / "c", seed=5, progress=False)
    (augmented / ".DS_Store").write_bytes(b"\0")
    with caplog.at_level("INFO"):
        train(augmented, [val], TINY, cfg, tmp_path / "c", seed=5, progress=False)
    assert "resumed from" in caplog.text and "starting afresh" not in caplog.text
    for store, path in ((augmented / "s0", "labels"), (val, "labels")):
        array = zarr.open_group(store, mode="r+")[path]
        index = (0, 0, 0) if array.ndim == 3 else (0, 0)
        array[index] = array[index] + 1
        caplog.clear()
        with caplog.at_level("WARNING"):
            changed, _ = train(augmented, [val], TINY, cfg, tmp_path / "c", seed=5, progress=False)
        assert "different ['data']" in caplog.text, store
    fresh, _ = train(augmented, [val], TINY, cfg, tmp_path / "f", seed=5, progress=False)
    _assert_identical(_state(fresh), _state(changed))


def test_nan_loss_stops_and_keeps_last_good_checkpoint(training_stores, tmp_path):
    augmented, val = training_stores

    def poison(it, model):
        if it == 3:
            with torch.no_grad():
                model.head.weight.fill_(float("nan"))

    with pytest.raises(NonFiniteLossError, match=r"nan at iteration 4.*iteration 2\) is kept"):
        train(augmented, [val], TINY, TINY_TRAIN, tmp_path / "n", seed=5, progress=False, on_step=poison)
    ckpt = read_checkpoint(tmp_path / "n" / CHECKPOINT)
    assert ckpt["iteration"] == 2 and all(torch.isfinite(v).all() for v in ckpt["model"].values())

    def poison_before_save(it, model):
        if it == 2:
            poison(3, model)

    # weights gone bad in the step of a checkpoint iteration are never saved either
    with pytest.raises(NonFiniteLossError, match="weights are NaN or inf after iteration 2"):
        train(augmented, [val], TINY, TINY_TRAIN, tmp_path / "p", seed=5, progress=False, on_step=poison_before_save)
    assert not (tmp_path / "p" / CHECKPOINT).exists()


def test_grad_clip_bounds_the_step(training_stores, tmp_path):
    augmented, val = training_stores
    torch.manual_seed(5)
    before = _state(UNet(**TINY))
    cfg = {**TINY_TRAIN, "iterations": 1, "lr": 1.0, "momentum": 0.0, "grad_clip": 1e-3}
    model, _ = train(augmented, [val], TINY, cfg, tmp_path / "g", seed=5, progress=False)
    step = torch.sqrt(sum(((model.state_dict()[k] - v) ** 2).sum() for k, v in before.items()))
    assert 0 < step.item() <= 1e-3 * (1 + 1e-4)


def test_guards_name_what_to_change(training_stores, tmp_path):
    augmented, val = training_stores
    with pytest.raises(ValueError, match=r"train.tile_size.*\[24, 26, 28, 30\]"):
        train(augmented, [val], TINY, {**TINY_TRAIN, "tile_size": 27}, tmp_path / "x", progress=False)
    with pytest.raises(ValueError, match="n_classes follows train.target.*Fix: remove n_classes"):
        train(augmented, [val], {**TINY, "n_classes": 3}, TINY_TRAIN, tmp_path / "x", progress=False)

    def out_of_memory(it, model):
        def forward(x):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        model.forward = forward

    with pytest.raises(RuntimeError, match="out of memory on cpu.*Fix: lower train.batch_size"):
        train(augmented, [val], TINY, TINY_TRAIN, tmp_path / "m", progress=False, on_step=out_of_memory)


def test_worker_processes_do_not_change_the_result(training_stores, tmp_path):
    augmented, val = training_stores
    cfg = {**TINY_TRAIN, "iterations": 2}
    inline, _ = train(augmented, [val], TINY, cfg, tmp_path / "w0", seed=5, progress=False)
    workers, _ = train(augmented, [val], TINY, {**cfg, "workers": 2}, tmp_path / "w2", seed=5, progress=False)
    _assert_identical(_state(inline), _state(workers))


def test_metrics_rows_record_the_learning_rate_of_their_step(training_stores, tmp_path):
    augmented, val = training_stores
    cfg = {**TINY_TRAIN, "iterations": 4, "schedule": "cosine", "val_interval": 4, "checkpoint_interval": 4}
    _, history = train(augmented, [val], TINY, cfg, tmp_path / "l", seed=5, progress=False)
    # rows every min(val_interval, checkpoint_interval) iterations; step i runs at lr (1 + cos(pi (i-1) / 4)) / 2
    assert [r["iteration"] for r in history] == [4]
    assert history[0]["lr"] == pytest.approx(0.01 * (1 + math.cos(math.pi * 3 / 4)) / 2)
    assert history[0]["tiles_per_s"] > 0 and history[0]["val_iou"] is not None


# --- moving average, selection, border target ---------------------------------------------------------

def test_delivered_weights_are_the_moving_average_of_the_best_validation(training_stores, tmp_path):
    augmented, val = training_stores
    cfg = {**TINY_TRAIN, "ema": 0.9, "val_interval": 2}
    raw = []
    model, history = train(augmented, [val], TINY, cfg, tmp_path / "e", seed=5, progress=False,
                           on_step=lambda it, m: raw.append(_state(m)))
    # the recurrence by hand: the first step copies, then decay min(0.9, (1 + t) / (10 + t)) at step t
    averages, avg = {}, None
    for t, state in enumerate(raw, start=1):
        if avg is None:
            avg = {k: v.clone() for k, v in state.items()}
        else:
            d = min(0.9, (1 + t) / (10 + t))
            avg = {k: d * avg[k] + (1 - d) * state[k] for k in avg}
        averages[t] = avg
    scored = [(r["val_f1"], r["iteration"]) for r in history if r["val_f1"] is not None]
    assert [it for _, it in scored] == [2, 4, 6]
    assert model.selected_iteration == max(scored)[1]  # best F1, the later of equals
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, averages[model.selected_iteration][k], rtol=1e-5, atol=1e-6)
    pp = model.postprocessing
    assert pp["chosen"] in ("components", "watershed") and pp[pp["chosen"]]["val_f1"] == max(scored)[0]
    last, _ = train(augmented, [val], TINY, {**cfg, "select": "last"}, tmp_path / "l", seed=5, progress=False)
    assert last.selected_iteration == 6
    for k, v in last.state_dict().items():
        torch.testing.assert_close(v, averages[6][k], rtol=1e-5, atol=1e-6)


def test_validation_copies_pass_the_network_once_and_decide_the_delivered_weights_ties(training_stores, tmp_path,
                                                                                       monkeypatch):
    augmented, val = training_stores
    passes, with_maps = [], validation.maps_of
    monkeypatch.setattr(validation, "maps_of", lambda model, planes, *a: passes.append(len(planes)) or
                        with_maps(model, planes, *a))
    cfg = {**TINY_TRAIN, "ema": 0.0, "tune": {"copies": 3}}
    model, history = train(augmented, [val], TINY, cfg, tmp_path / "c", seed=5, progress=False)
    assert sum(r["val_f1"] is not None for r in history) == 2
    # two validations of the one plane, then the delivered weights': the plane and its 3 copies
    assert [n for n in passes if n] == [1, 1, 1, 3]
    planes = validation_planes([val])
    tile = check_input_size(cfg["tile_size"], model.config.depth, model.config.padding)
    again, _ = validation.validate_instances(model, planes, tile, TrainConfig.from_dict(cfg), 2,
                                             validation.augmented_copies(planes, augmented, 3))
    assert model.postprocessing == again and "aug_ties" in again[again["chosen"]]


def test_with_tune_tta_the_delivered_weights_search_on_eight_pass_maps_and_the_checkpoint_on_one(
        training_stores, tmp_path, monkeypatch):
    augmented, val = training_stores
    passes, with_maps = [], validation.maps_of
    monkeypatch.setattr(validation, "maps_of", lambda model, planes, tile, batch, tta=False: passes.append(
        (len(planes), tta)) or with_maps(model, planes, tile, batch, tta))
    cfg = {**TINY_TRAIN, "ema": 0.0, "tune": {"copies": 0, "tta": True}}
    model, history = train(augmented, [val], TINY, cfg, tmp_path / "t", seed=5, progress=False)
    # two single-pass validations choose the checkpoint; then one 8-pass search on the delivered weights
    assert [p for p in passes if p[0]] == [(1, False), (1, False), (1, True)]
    planes = validation_planes([val])
    tile = check_input_size(cfg["tile_size"], model.config.depth, model.config.padding)
    again, _ = validation.validate_instances(model, planes, tile, TrainConfig.from_dict(cfg), 2, tta=True)
    assert model.postprocessing == again


def test_without_validation_the_last_weights_and_no_postprocessing(training_stores, tmp_path, caplog):
    augmented, _ = training_stores
    with caplog.at_level("WARNING"):
        model, history = train(augmented, [], TINY, {**TINY_TRAIN, "ema": 0.0}, tmp_path / "n", seed=5,
                               progress=False)
    assert model.postprocessing is None and model.selected_iteration == 6 and "no validation" in caplog.text
    assert all(r["val_f1"] is None for r in history)


def test_border_target_trains_a_three_class_net(training_stores, tmp_path):
    augmented, val = training_stores
    labels = zarr.open_group(augmented / "s0", mode="r")["labels"][0]
    reader = TileReader(augmented_planes(augmented), 40, 4, "border", 2)
    _, target, _ = reader.read(0, 30, 40)
    # a window's classes are the whole plane's, cropped: the border's context is read around the window
    np.testing.assert_array_equal(target, border_classes(labels, 2)[30:70, 40:80])
    assert set(np.unique(target)) == {0, 1, 2}
    model, history = train(augmented, [val], TINY, {**TINY_TRAIN, "target": "border"}, tmp_path / "b", seed=5,
                           progress=False)
    assert model.config.n_classes == 3 and history[-1]["val_iou"] is not None


def test_a_border_target_without_interior_pixels_is_refused(training_stores, tmp_path):
    augmented, val = training_stores
    with pytest.raises(InputError, match=r"augmented.zarr: has no cell wider than 41 px.*Fix: lower train.border"):
        train(augmented, [val], TINY, {**TINY_TRAIN, "target": "border", "border_width": 20}, tmp_path / "w",
              progress=False)


def test_a_border_target_on_cells_that_never_touch_is_warned(training_stores, tmp_path, caplog):
    augmented, val = training_stores
    apart = tmp_path / "apart.zarr"
    zarr.open_group(apart, mode="w", zarr_format=3).attrs.update(zarr.open_group(augmented, mode="r").attrs.asdict())
    for s in ("s0", "s1"):
        group = zarr.open_group(augmented / s, mode="r")
        labels = group["labels"][:]
        # one cell per plane: nothing for the border class to part
        single = np.where(labels == np.bincount(labels.ravel())[1:].argmax() + 1, labels, 0)
        for name, array in (("image", group["image"][:]), ("labels", single), ("weights", group["weights"][:])):
            write_array(apart / s, name, array)
    border = {**TINY_TRAIN, "target": "border", "iterations": 1, "val_interval": 1}
    with caplog.at_level("WARNING", logger="tileunet.train"):
        train(apart, [val], TINY, border, tmp_path / "a", progress=False)
    assert "no two cells of" in caplog.text and "apart.zarr" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="tileunet.train"):
        train(augmented, [val], TINY, border, tmp_path / "t", progress=False)
    assert "no two cells of" not in caplog.text


def test_train_config_has_the_schemas_keys_and_takes_its_defaults():
    built = dataclasses.asdict(TrainConfig.from_dict({}))
    assert set(built) == set(load_schema()["properties"]["train"]["properties"]) and built == defaults("train")


@pytest.fixture(scope="module")
def two_channel_stores(tmp_path_factory):
    """augmented.zarr and val.zarr of (N, 2, Y, X) images named DAPI, GFP (the cell channel and its inverse)."""
    from synthetic import training_plane
    from tileunet.io import write_array
    root = tmp_path_factory.mktemp("channels")
    zarr.open_group(root / "augmented.zarr", mode="w", zarr_format=3).attrs.update({"seed": 0})
    names = {"channels": ["DAPI", "GFP"]}
    for store, seeds in ((root / "augmented.zarr" / "s0", (1, 2)), (root / "val.zarr", (3,))):
        planes = [training_plane(s) for s in seeds]
        image = np.stack([np.stack([im, 1 - im]) for im, _, _ in planes])
        write_array(store, "image", image if len(seeds) > 1 else image[0], attrs=names)
        for i, name in ((1, "labels"), (2, "weights")):
            arrays = np.stack([p[i] for p in planes])
            write_array(store, name, arrays if len(seeds) > 1 else arrays[0])
    return root / "augmented.zarr", root / "val.zarr"


def test_model_input_channels_follow_the_data(two_channel_stores, tmp_path):
    augmented, val = two_channel_stores
    model, history = train(augmented, [val], TINY, TINY_TRAIN, tmp_path / "ckpt", seed=0, progress=False)
    assert model.config.in_channels == 2 and model.channels == ["DAPI", "GFP"]
    assert history[-1]["iteration"] == 6 and math.isfinite(history[-1]["loss"])
    with pytest.raises(InputError, match=r"holds images of 2 channel\(s\) \['DAPI', 'GFP'\], but model.in_channels"
                                         r" is 1") as err:
        train(augmented, [val], {**TINY, "in_channels": 1}, TINY_TRAIN, tmp_path / "ckpt1", seed=0, progress=False)
    assert "augmented.zarr" in str(err.value) and not (tmp_path / "ckpt1").exists()
