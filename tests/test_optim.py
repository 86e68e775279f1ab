"""Optimisers, learning-rate schedules and the moving average of the weights."""

import math

import pytest
import torch

from tileunet.optim import make_ema, make_optimizer, make_scheduler
from tileunet.train import TrainConfig


def test_schedules_and_optimizers():
    def lrs(**kw):
        cfg = TrainConfig.from_dict({"iterations": 10, "lr": 1.0, **kw})
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


def test_the_moving_average_warms_up_then_decays_at_its_rate():
    net = torch.nn.Linear(1, 1, bias=False)
    ema = make_ema(net, 0.9)
    values = []
    for step in range(1, 100):
        with torch.no_grad():
            net.weight.fill_(float(step))
        ema.schedule.step = step
        ema.update_parameters(net)
        values.append(ema.module.weight.item())
    assert values[0] == 1.0  # the first update copies
    d = min(0.9, 3 / 12)
    assert values[1] == pytest.approx(d * 1 + (1 - d) * 2)
    d = min(0.9, 40 / 49)  # still warming up at step 39
    assert values[38] == pytest.approx(d * values[37] + (1 - d) * 39)
    assert values[-1] == pytest.approx(0.9 * values[-2] + 0.1 * 99)  # (1 + t) / (10 + t) >= 0.9 from t = 80
    assert make_ema(net, 0.0) is None
    with pytest.raises(ValueError, match=r"train.ema must be in \[0, 1\)"):
        make_ema(net, 1.0)
