"""Learning-rate schedules of the training loops: ``train.schedule`` of a classifier (stepped
per batch) and the segmenter's poly schedule (driven by the share of the budget used)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch


class PolySchedule:
    """Linear warm-up then ``(1 - progress) ** 0.9``; progress in 0..1 is set by the caller.

    A plain object with ``state_dict``: the progress can come from steps or from elapsed
    time, which ``torch.optim.lr_scheduler`` classes cannot express.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, base_lr: float, warmup: float) -> None:
        self.optimizer, self.base_lr, self.warmup = optimizer, base_lr, warmup
        self.progress = 0.0

    def step(self, progress: float) -> float:
        """Set the learning rate for ``progress`` (fraction of the budget used); returns it."""
        self.progress = min(max(progress, 0.0), 1.0)
        lr = self.base_lr * (1.0 - self.progress) ** 0.9
        if self.warmup > 0 and self.progress < self.warmup:
            lr *= max(self.progress / self.warmup, 0.02)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def state_dict(self) -> dict[str, float]:
        return {"progress": self.progress, "base_lr": self.base_lr, "warmup": self.warmup}

    def load_state_dict(self, state: Mapping[str, float]) -> None:
        self.progress = float(state["progress"])


def lr_schedule(
    optimizer: torch.optim.Optimizer, settings: dict[str, Any], total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """The learning-rate schedule of ``train.schedule``, stepped once per batch."""
    if settings["schedule"] == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=settings["learning_rate"], total_steps=total_steps, pct_start=0.15
        )
    if settings["schedule"] == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
