"""Tiles, the weighted loss and training: convergence, resume to the bit, guards."""

import math
import os
import signal

import numpy as np
import pytest
import torch
import zarr
from hypothesis import given, settings
from hypothesis import strategies as st
from synthetic import touching_cells

from tileunet.device import autocast, flushes_denormals, select_device
from tileunet.errors import InputError
from tileunet.io import write_array
from tileunet.model import UNet
from tileunet.normalize import normalize_plane
from tileunet.plots.train import loss_curve
from tileunet.targets import border_classes
from tileunet.tiles import (IterationBatches, RandomTiles, TileReader, augmented_planes, grid_specs, mirror_index,
                            planes_of, read_window, validation_tiles)
from tileunet.train import (CHECKPOINT, METRIC_COLUMNS, Interrupted, NonFiniteLossError, TrainConfig, load_checkpoint,
                            make_optimizer, make_scheduler, train, weighted_cross_entropy, write_metrics)
from tileunet.weights import weight_map

TINY = {"depth": 2, "base_channels": 4, "dropout": 0.2}
TINY_TRAIN = {"device": "cpu", "iterations": 6, "tile_size": 28, "batch_size": 2, "optimizer": "sgd", "lr": 0.01,
              "momentum": 0.99, "val_interval": 3, "val_tiles": 2, "checkpoint_interval": 2, "workers": 0}


@pytest.fixture(autouse=True)
def one_thread():
    # Tiny convolutions gain nothing from threads, and OpenMP spinning on a shared 2-core box costs 10x.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _cells(seed, shape=(96, 128)):
    image, labels = touching_cells(shape=shape, n_cells=8, seed=seed)
    return normalize_plane(image).astype(np.float32), labels, weight_map(labels)


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """augmented.zarr (2 samples x 2 copies) and one validation store of touching cells."""
    root = tmp_path_factory.mktemp("data")
    zarr.open_group(root / "augmented.zarr", mode="w", zarr_format=3).attrs.update({"seed": 0})
    for s in range(2):
        planes = [_cells(10 * s + c) for c in range(2)]
        for name, arrays in zip(("image", "labels", "weights"), zip(*planes)):
            write_array(root / "augmented.zarr" / f"s{s}", name, np.stack(arrays))
    for name, array in zip(("image", "labels", "weights"), _cells(99)):
        write_array(root / "val.zarr", name, array)
    return root / "augmented.zarr", root / "val.zarr"


# --- the loss ----------------------------------------------------------------------------------

def test_weighted_loss_hand_computed_3x3():
    # class-1 logit 0 or ln 3 against class-0 logit 0: p(correct) = 1/2, 3/4 or 1/4
    z = torch.tensor([[0.0, math.log(3), math.log(3)], [0.0, 0.0, math.log(3)], [math.log(3), 0.0, 0.0]])
    logits = torch.stack([torch.zeros(3, 3), z])[None]  # (1, 2, 3, 3)
    target = torch.tensor([[[1, 1, 0], [0, 1, 1], [0, 0, 1]]])
    w = torch.tensor([[[1.0, 2.0, 0.0], [1.0, 10.0, 1.0], [2.0, 1.0, 0.5]]])
    p = np.array([[1 / 2, 3 / 4, 1 / 4], [1 / 2, 1 / 2, 3 / 4], [1 / 4, 1 / 2, 1 / 2]])
    wce = -(w[0].numpy() * np.log(p))
    got = weighted_cross_entropy(logits, target, w).item()
    assert got == pytest.approx(wce.sum() / w.sum().item(), rel=1e-6)
    assert got == pytest.approx((13.5 * math.log(2) + 3 * math.log(4 / 3) + 2 * math.log(4)) / 18.5, rel=1e-6)
    assert weighted_cross_entropy(logits, target, w, "mean").item() == pytest.approx(wce.sum() / 9, rel=1e-6)
    assert weighted_cross_entropy(logits.bfloat16(), target, w).dtype == torch.float32
    with pytest.raises(ValueError, match="normalization"):
        weighted_cross_entropy(logits, target, w, "sum")


# --- tiles ---------------------------------------------------------------------------------------

@settings(max_examples=50, deadline=None)
@given(n=st.integers(1, 9), start=st.integers(-25, 9), length=st.integers(1, 30),
       mode=st.sampled_from(["symmetric", "reflect"]))
def test_mirror_index_equals_numpy_pad(n, start, length, mode):
    if mode == "reflect" and n == 1:
        mode = "symmetric"  # numpy's reflect of one pixel is that pixel too; both give zeros
    pad = 40
    padded = np.pad(np.arange(n), pad, mode=mode)
    assert mirror_index(start, start + length, n, mode).tolist() == padded[pad + start:pad + start + length].tolist()


class _Recording:
    """An array that records the boxes read from it."""

    def __init__(self, data):
        self.data, self.shape, self.reads = data, data.shape, []

    def __getitem__(self, key):
        self.reads.append(key)
        return self.data[key]


@settings(max_examples=30, deadline=None)
@given(y0=st.integers(-20, 30), x0=st.integers(-20, 30), h=st.integers(1, 24), w=st.integers(1, 24))
def test_read_window_mirrors_and_reads_only_the_box(y0, x0, h, w):
    data = np.arange(3 * 17 * 23).reshape(3, 17, 23)
    arr = _Recording(data)
    got = read_window(arr, 1, y0, x0, h, w)
    padded = np.pad(data[1], 50, mode="symmetric")
    np.testing.assert_array_equal(got, padded[50 + y0:50 + y0 + h, 50 + x0:50 + x0 + w])
    (key,) = arr.reads
    assert key[0] == 1 and (key[1].stop - key[1].start) <= min(h, 17) and (key[2].stop - key[2].start) <= min(w, 23)


def test_tile_reader_aligns_input_and_output_windows(tmp_path):
    # image = labels = weights = a ramp, so the centre of the input window must equal the label window
    ramp = np.arange(40 * 50, dtype=np.float32).reshape(1, 40, 50) + 1
    for name, dtype in (("image", np.float32), ("labels", np.int32), ("weights", np.float32)):
        write_array(tmp_path / "a.zarr" / "s", name, ramp.astype(dtype))
    zarr.open_group(tmp_path / "a.zarr", mode="a")
    reader = TileReader(augmented_planes(tmp_path / "a.zarr"), out=12, margin=8)
    for y, x in ((0, 0), (28, 38), (5, 17)):
        image, target, weights = reader.read(0, y, x)
        assert image.shape == (1, 28, 28) and target.shape == weights.shape == (12, 12)
        np.testing.assert_array_equal(image[0, 8:20, 8:20], weights)
        np.testing.assert_array_equal(weights, ramp[0, y:y + 12, x:x + 12])
        assert target.dtype == np.int64 and target.min() == 1
    # a plane smaller than the output tile: outside pixels get weight 0, the inside keeps its values
    write_array(tmp_path / "b.zarr", "image", np.ones((5, 7), np.float32))
    write_array(tmp_path / "b.zarr", "labels", np.zeros((5, 7), np.int32))
    write_array(tmp_path / "b.zarr", "weights", np.full((5, 7), 2.0, np.float32))
    image, target, weights = TileReader(planes_of(tmp_path / "b.zarr"), 12, 8).read(0, 0, 0)
    assert weights.sum() == 2.0 * 35 and (weights[:5, :7] == 2).all() and image.shape == (1, 28, 28)


def test_random_tiles_are_a_function_of_seed_and_index(stores):
    augmented, _ = stores
    reader = TileReader(augmented_planes(augmented), 12, 8)
    tiles = RandomTiles(reader, seed=3)
    specs = [tiles.spec(t) for t in range(400)]
    assert specs == [RandomTiles(reader, seed=3).spec(t) for t in range(400)]
    assert specs != [RandomTiles(reader, seed=4).spec(t) for t in range(400)]
    assert {s[0] for s in specs} == {0, 1, 2, 3}
    ys, xs = np.array([s[1] for s in specs]), np.array([s[2] for s in specs])
    assert ys.min() == 0 and ys.max() == 96 - 12 and xs.min() == 0 and xs.max() == 128 - 12  # borders are reached
    assert list(IterationBatches(2, 4, 3)) == [[6, 7, 8], [9, 10, 11]]


def test_foreground_oversampling_places_tiles_over_cells(tmp_path):
    labels = np.zeros((2, 200, 300), np.int32)
    labels[1, 150:160, 250:262] = 7  # one small cell in the second plane only
    zarr.open_group(tmp_path / "aug.zarr", mode="w", zarr_format=3)
    for name, a in (("image", labels.astype(np.float32)), ("labels", labels), ("weights", np.ones_like(labels, np.float32))):
        write_array(tmp_path / "aug.zarr" / "s", name, a)
    reader = TileReader(augmented_planes(tmp_path / "aug.zarr"), 16, 4)
    always = RandomTiles(reader, seed=0, foreground_p=1.0)
    assert all(always[t][1].sum() > 0 for t in range(50))  # every tile's target holds foreground
    uniform = RandomTiles(reader, seed=0, foreground_p=0.0)
    assert sum(uniform[t][1].sum() > 0 for t in range(50)) < 10
    half = [RandomTiles(reader, seed=0, foreground_p=0.5).spec(t) for t in range(200)]
    assert half == [RandomTiles(reader, seed=0, foreground_p=0.5).spec(t) for t in range(200)]


def test_validation_tiles_are_fixed_and_cover_the_planes(stores):
    _, val = stores
    planes = planes_of(val)
    specs = grid_specs(planes, 40)
    covered = np.zeros(planes[0].shape, bool)
    for _, y, x in specs:
        covered[y:y + 40, x:x + 40] = True
    assert covered.all()
    a, b = validation_tiles([val], 40, 8, 4), validation_tiles([val], 40, 8, 4)
    assert a[0].shape == (4, 1, 56, 56) and a[1].shape == a[2].shape == (4, 40, 40)
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert validation_tiles([val], 40, 8, 100)[0].shape[0] == len(specs) and validation_tiles([], 40, 8, 4) is None


def test_bad_stores_are_refused(tmp_path):
    write_array(tmp_path / "v.zarr", "image", np.zeros((8, 8), np.float32))
    with pytest.raises(InputError, match=r"v.zarr.*lacks the arrays \['labels', 'weights'\]"):
        planes_of(tmp_path / "v.zarr")
    zarr.open_group(tmp_path / "empty.zarr", mode="w")
    with pytest.raises(InputError, match="no sample groups"):
        augmented_planes(tmp_path / "empty.zarr")


# --- optimisation options --------------------------------------------------------------------------

def test_schedules_and_optimizers():
    def lrs(**kw):
        cfg = TrainConfig(iterations=10, lr=1.0, **kw)
        opt = make_optimizer(torch.nn.Linear(1, 1), cfg)
        sched = make_scheduler(opt, cfg)
        out = []
        for _ in range(10):
            opt.step()
            sched.step()
            out.append(sched.get_last_lr()[0])
        return opt, out

    opt, const = lrs()
    assert const == [1.0] * 10 and isinstance(opt, torch.optim.SGD) and opt.defaults["momentum"] == 0.99
    _, cos = lrs(schedule="cosine")
    assert cos[-1] == pytest.approx(0.0, abs=1e-12) and cos[4] == pytest.approx(0.5 * (1 + math.cos(math.pi / 2)))
    _, step = lrs(schedule="step", step_size=4, step_gamma=0.5)
    assert step == [1.0] * 3 + [0.5] * 4 + [0.25] * 3
    assert isinstance(lrs(optimizer="adam")[0], torch.optim.Adam)
    with pytest.raises(ValueError, match="unknown train config keys"):
        TrainConfig.from_dict({"lr": 1.0, "epochs": 3})


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


# --- training ----------------------------------------------------------------------------------------

def test_training_reaches_validation_iou_on_touching_cells(stores, tmp_path):
    augmented, val = stores
    cfg = {"device": "cpu", "iterations": 80, "tile_size": 60, "batch_size": 4, "optimizer": "adam", "lr": 0.01,
           "val_interval": 40, "val_tiles": 8, "checkpoint_interval": 80, "workers": 0}
    model, history = train(augmented, [val], {"depth": 2, "base_channels": 8, "dropout": 0.0}, cfg,
                           tmp_path / "ckpt", seed=0, progress=False)
    assert history[-1]["iteration"] == 80 and history[-1]["val_iou"] >= 0.95, history
    assert history[-1]["loss"] < history[0]["loss"] / 5
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


def test_training_flushes_subnormal_floats_and_restores_the_mode(stores, tmp_path):
    if not torch.set_flush_denormal(False):
        pytest.skip("this CPU cannot flush subnormal floats")
    augmented, val = stores
    seen = []
    train(augmented, [val], TINY, TINY_TRAIN, tmp_path / "f", progress=False,
          on_step=lambda it, model: seen.append(flushes_denormals()))
    assert seen and all(seen)
    assert not flushes_denormals()


def test_kill_and_resume_gives_identical_weights(stores, tmp_path):
    augmented, val = stores
    whole, rows = train(augmented, [val], TINY, TINY_TRAIN, tmp_path / "a", seed=5, progress=False)
    previous = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Interrupted, match="SIGTERM at iteration 3"):
        train(augmented, [val], TINY, TINY_TRAIN, tmp_path / "b", seed=5, progress=False, on_step=_kill_at(3))
    assert signal.getsignal(signal.SIGTERM) is previous  # handlers restored
    assert load_checkpoint(tmp_path / "b" / CHECKPOINT)["iteration"] == 3
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


def test_checkpoint_of_another_setup_is_not_resumed(stores, tmp_path, caplog):
    augmented, val = stores
    cfg = {**TINY_TRAIN, "iterations": 2}
    first, _ = train(augmented, [val], TINY, cfg, tmp_path / "c", seed=5, progress=False)
    fresh, _ = train(augmented, [val], TINY, {**cfg, "lr": 0.02}, tmp_path / "d", seed=5, progress=False)
    with caplog.at_level("WARNING"):
        changed, _ = train(augmented, [val], TINY, {**cfg, "lr": 0.02}, tmp_path / "c", seed=5, progress=False)
    assert "different ['train']" in caplog.text
    _assert_identical(_state(fresh), _state(changed))


def test_nan_loss_stops_and_keeps_last_good_checkpoint(stores, tmp_path):
    augmented, val = stores

    def poison(it, model):
        if it == 3:
            with torch.no_grad():
                model.head.weight.fill_(float("nan"))

    with pytest.raises(NonFiniteLossError, match=r"nan at iteration 4.*iteration 2\) is kept"):
        train(augmented, [val], TINY, TINY_TRAIN, tmp_path / "n", seed=5, progress=False, on_step=poison)
    ckpt = load_checkpoint(tmp_path / "n" / CHECKPOINT)
    assert ckpt["iteration"] == 2 and all(torch.isfinite(v).all() for v in ckpt["model"].values())

    def poison_before_save(it, model):
        if it == 2:
            poison(3, model)

    # weights gone bad in the step of a checkpoint iteration are never saved either
    with pytest.raises(NonFiniteLossError, match="weights are NaN or inf after iteration 2"):
        train(augmented, [val], TINY, TINY_TRAIN, tmp_path / "p", seed=5, progress=False, on_step=poison_before_save)
    assert not (tmp_path / "p" / CHECKPOINT).exists()


def test_grad_clip_bounds_the_step(stores, tmp_path):
    augmented, val = stores
    torch.manual_seed(5)
    before = _state(UNet(**TINY))
    cfg = {**TINY_TRAIN, "iterations": 1, "lr": 1.0, "momentum": 0.0, "grad_clip": 1e-3}
    model, _ = train(augmented, [val], TINY, cfg, tmp_path / "g", seed=5, progress=False)
    step = torch.sqrt(sum(((model.state_dict()[k] - v) ** 2).sum() for k, v in before.items()))
    assert 0 < step.item() <= 1e-3 * (1 + 1e-4)


def test_guards_name_what_to_change(stores, tmp_path):
    augmented, val = stores
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


def test_worker_processes_do_not_change_the_result(stores, tmp_path):
    augmented, val = stores
    cfg = {**TINY_TRAIN, "iterations": 2}
    inline, _ = train(augmented, [val], TINY, cfg, tmp_path / "w0", seed=5, progress=False)
    workers, _ = train(augmented, [val], TINY, {**cfg, "workers": 2}, tmp_path / "w2", seed=5, progress=False)
    _assert_identical(_state(inline), _state(workers))


def test_metrics_rows_record_the_learning_rate_of_their_step(stores, tmp_path):
    augmented, val = stores
    cfg = {**TINY_TRAIN, "iterations": 4, "schedule": "cosine", "val_interval": 4, "checkpoint_interval": 4}
    _, history = train(augmented, [val], TINY, cfg, tmp_path / "l", seed=5, progress=False)
    # rows every min(val_interval, checkpoint_interval) iterations; step i runs at lr (1 + cos(pi (i-1) / 4)) / 2
    assert [r["iteration"] for r in history] == [4]
    assert history[0]["lr"] == pytest.approx(0.01 * (1 + math.cos(math.pi * 3 / 4)) / 2)
    assert history[0]["tiles_per_s"] > 0 and history[0]["val_iou"] is not None


# --- moving average, selection, border target ---------------------------------------------------------

def test_delivered_weights_are_the_moving_average_of_the_best_validation(stores, tmp_path):
    augmented, val = stores
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


def test_without_validation_the_last_weights_and_no_postprocessing(stores, tmp_path, caplog):
    augmented, _ = stores
    with caplog.at_level("WARNING"):
        model, history = train(augmented, [], TINY, {**TINY_TRAIN, "ema": 0.0}, tmp_path / "n", seed=5,
                               progress=False)
    assert model.postprocessing is None and model.selected_iteration == 6 and "no validation" in caplog.text
    assert all(r["val_f1"] is None for r in history)


def test_border_target_trains_a_three_class_net(stores, tmp_path):
    augmented, val = stores
    labels = zarr.open_group(augmented / "s0", mode="r")["labels"][0]
    reader = TileReader(augmented_planes(augmented), 40, 4, "border", 2)
    _, target, _ = reader.read(0, 30, 40)
    # a window's classes are the whole plane's, cropped: the border's context is read around the window
    np.testing.assert_array_equal(target, border_classes(labels, 2)[30:70, 40:80])
    assert set(np.unique(target)) == {0, 1, 2}
    model, history = train(augmented, [val], TINY, {**TINY_TRAIN, "target": "border"}, tmp_path / "b", seed=5,
                           progress=False)
    assert model.config.n_classes == 3 and history[-1]["val_iou"] is not None


def test_a_border_target_without_interior_pixels_is_refused(stores, tmp_path):
    augmented, val = stores
    with pytest.raises(InputError, match=r"augmented.zarr: has no cell wider than 41 px.*Fix: lower train.border"):
        train(augmented, [val], TINY, {**TINY_TRAIN, "target": "border", "border_width": 20}, tmp_path / "w",
              progress=False)
