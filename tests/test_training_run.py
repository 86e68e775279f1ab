"""One run's state: the kept validation (best F1, or the last) and the delivered network."""

import torch

from tileunet.model import UNet
from tileunet.train import TrainConfig
from tileunet.training_run import TrainingRun, deliver


def _run(tmp_path, **cfg):
    torch.manual_seed(0)
    model = UNet(depth=2, base_channels=2, dropout=0.0)
    return TrainingRun(model, TrainConfig.from_dict({"iterations": 4, **cfg}), "cpu", tmp_path, {})


def test_best_f1_is_kept_later_ties_win_and_last_keeps_the_last(tmp_path):
    run = _run(tmp_path, ema=0.0)
    for it, score in ((1, (0.5, 0.9)), (2, (0.8, 0.1)), (3, (0.8, 0.1)), (4, (0.6, 0.9))):
        run.consider(it, score, {"chosen": "components", "at": it})
    assert run.best["iteration"] == 3 and run.best["postprocessing"]["at"] == 3
    last = _run(tmp_path / "l", ema=0.0, select="last")
    for it, score in ((1, (0.9, 0.9)), (2, (0.1, 0.1))):
        last.consider(it, score, {"at": it})
    assert last.best["iteration"] == 2


def test_deliver_loads_the_kept_weights_into_the_network(tmp_path):
    run = _run(tmp_path, ema=0.0)
    run.consider(1, (0.5, 0.5), {"chosen": "components"})
    kept = {k: v.clone() for k, v in run.model.state_dict().items()}
    with torch.no_grad():
        for p in run.model.parameters():
            p.add_(1.0)
    run.iteration = 2
    model = deliver(run)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in kept.items())
    assert model.selected_iteration == 1 and model.postprocessing == {"chosen": "components"} and not model.training


def test_deliver_warns_when_validation_left_the_post_processing_undecided(tmp_path, caplog):
    run = _run(tmp_path, ema=0.0)
    tied = {"chosen": "components",
            "components": {"instances": "components", "threshold": 0.5, "min_size": 0, "val_f1": 0.9, "val_iou": 0.8,
                           "val_ties": 7}}
    run.consider(1, (0.9, 0.8), tied)
    with caplog.at_level("WARNING", logger="tileunet.postprocess"):
        deliver(run)
    assert "7 post-processings of train.tune's grid score the same" in caplog.text
