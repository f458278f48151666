from __future__ import annotations

import math

import pytest
import torch

from medcnn.train.schedules import AnnealingSchedule, lr_schedule


def _optimizer() -> torch.optim.Optimizer:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)


def test_warmup_then_cosine_reaches_the_floor_at_the_planned_step():
    opt = _optimizer()
    s = AnnealingSchedule(opt, peak=1e-3, total_steps=100, warmup_steps=10, floor=0.01)
    assert opt.param_groups[0]["lr"] == pytest.approx(2e-5)  # 2 % of the peak at step 0
    rates = [s.step() for _ in range(100)]
    assert rates[4] == pytest.approx(
        1e-3 * 0.5 * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * 0.05)))
    )
    assert max(rates) == pytest.approx(rates[9], rel=1e-6)  # the peak right after warm-up
    assert rates[-1] == pytest.approx(1e-5) and s.finished()
    assert all(a >= b for a, b in zip(rates[10:-1], rates[11:], strict=True))  # only down


def test_time_budget_anneals_before_the_steps_run_out():
    s = AnnealingSchedule(_optimizer(), peak=1.0, total_steps=1000, budget_seconds=10.0)
    for _ in range(9):
        s.step(seconds=1.0)
    assert not s.finished() and s.progress() == pytest.approx(0.9)
    s.step(seconds=1.0)
    assert s.finished() and s.get_last_lr() == [pytest.approx(0.01)]


def test_landing_compresses_the_rest_of_the_schedule_and_resumes_exactly():
    s = AnnealingSchedule(_optimizer(), peak=1.0, total_steps=1000, warmup_steps=0)
    for _ in range(100):
        s.step()
    s.land(20)
    copy = AnnealingSchedule(_optimizer(), peak=1.0, total_steps=1000)
    copy.load_state_dict(s.state_dict())
    for _ in range(19):
        s.step()
        copy.step()
    assert not s.finished() and s.get_last_lr() == copy.get_last_lr()
    s.step()
    assert s.finished() and s.get_last_lr() == [pytest.approx(0.01)]


def test_config_schedules():
    settings = {
        "schedule": "onecycle",
        "learning_rate": 0.1,
        "warmup_epochs": 1,
        "max_minutes": None,
    }
    onecycle = lr_schedule(_optimizer(), settings, 200, 10)
    assert onecycle.warmup_steps == 30 and onecycle.shape == "cosine"
    cosine = lr_schedule(_optimizer(), {**settings, "schedule": "cosine"}, 200, 10)
    assert cosine.warmup_steps == 10
    constant = lr_schedule(
        _optimizer(), {**settings, "schedule": "constant", "max_minutes": 2}, 200, 10
    )
    assert constant.shape == "constant" and constant.budget_seconds == 120.0
