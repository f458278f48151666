"""One epoch of the segmentation loop (:mod:`medcnn.train.segmenter`) and the state a resume
restores, as in nnU-Net's and MONAI's trainers: the optimiser step, the epoch's run over the
loader with the schedule set before each step, and the loop's progress (history, best epoch,
time used), which goes into the checkpoint and comes back from it."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from medcnn.hardware import autocast
from medcnn.train.checkpoint import cpu_state, rng_state
from medcnn.train.loaders import without_meta_tracking
from medcnn.train.schedules import PolySchedule
from medcnn.train.validation import validate_segmenter
from medcnn.train.weights import clip_gradients
from medcnn.transforms.segmentation import IMAGE, LABEL


@dataclass
class SegmenterProgress:
    """The segmentation loop's own state, which a resume restores with the resumable parts:
    the history, the best epoch so far and its weights, the training time used (over
    resumes) and why it stopped."""

    history: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] = field(default_factory=lambda: {"epoch": 0, "val_dice": -1.0})
    best_state: dict[str, torch.Tensor] = field(default_factory=dict)
    elapsed: float = 0.0
    start_epoch: int = 1
    resumed_from: int | None = None
    stop_reason: str = "epochs"

    @classmethod
    def of(cls, state: Mapping[str, Any] | None, epochs: int) -> SegmenterProgress:
        """A fresh start, or the progress saved in a checkpoint ``state`` (a finished run's
        goes on after its last epoch: with no epoch left)."""
        if state is None:
            return cls()
        start = int(state["epoch"]) + 1
        return cls(
            history=state["history"],
            best=state["best"],
            best_state=state["best_state"],
            elapsed=float(state["elapsed"]),
            start_epoch=epochs + 1 if state.get("finished") else start,
            resumed_from=start,
            stop_reason=state.get("stop_reason", "epochs"),
        )

    def consider(
        self, epoch: int, val: Mapping[str, Any], classes: Sequence[str], model: torch.nn.Module
    ) -> None:
        """Keep the validated epoch (and ``model``'s weights) when its mean Dice is the best."""
        if val["dice"] > self.best["val_dice"]:
            self.best = {"epoch": epoch, **dice_columns(val, classes)}
            self.best_state = cpu_state(model)

    def saved(self, finished: bool) -> dict[str, Any]:
        """The checkpoint's progress entries, with the random state as it is now."""
        return {
            "history": self.history,
            "best": self.best,
            "best_state": self.best_state,
            "elapsed": self.elapsed,
            "rng": rng_state(),
            "finished": finished,
            "stop_reason": self.stop_reason,
        }


@dataclass
class SegmenterStep:
    """What one optimiser step of the segmenter uses."""

    model: torch.nn.Module
    loss_fn: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    device: torch.device
    precision: str
    #: the compiled training forward (``train.compile``) and the batch shape it was compiled
    #: for; a batch of another shape (the short one at the end of the loader) runs eager
    #: rather than compiling again
    compiled: Callable[[torch.Tensor], torch.Tensor] | None = None
    compiled_shape: tuple[int, ...] = ()

    def __call__(self, batch: Mapping[str, torch.Tensor]) -> tuple[float, int]:
        """One optimiser step on a batch of patches; (its loss, the patches in it)."""
        images = batch[IMAGE].to(self.device, non_blocking=True).float()
        labels = batch[LABEL].to(self.device, non_blocking=True).long()
        self.optimizer.zero_grad(set_to_none=True)
        forward = self.model
        if self.compiled is not None and tuple(images.shape) == self.compiled_shape:
            forward = self.compiled
        with autocast(self.device, self.precision):
            logits = forward(images)
        loss = self.loss_fn(logits.float(), labels)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        clip_gradients(self.model.parameters(), 12.0)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return float(loss.detach()), int(images.shape[0])


@dataclass
class EpochPlan:
    """How the segmenter's epochs run: ``iterations`` batches of ``loader`` each (the loader
    starts again when it runs out), ``epochs`` of them, the learning rate ``schedule`` set
    before each step from how far the run is (by steps, or by the time budget ``budget_s``
    when that is further along), the time counted by ``now``."""

    loader: torch.utils.data.DataLoader
    schedule: PolySchedule
    iterations: int
    epochs: int
    budget_s: float | None
    now: Callable[[], float]


def train_epoch(step: SegmenterStep, plan: EpochPlan, epoch: int, elapsed: float) -> dict[str, Any]:
    """Train epoch ``epoch`` (``elapsed``: the training seconds of the epochs before); the
    start of its history row, ``val_dice`` NaN until it is validated."""
    step.model.train()
    started = plan.now()
    wall_started = time.perf_counter()
    losses: list[float] = []
    patches = 0
    total_steps = plan.epochs * plan.iterations
    n_step = (epoch - 1) * plan.iterations
    with without_meta_tracking():
        batches = iter(plan.loader)
        for _ in range(plan.iterations):
            try:
                batch = next(batches)
            except StopIteration:
                batches = iter(plan.loader)
                batch = next(batches)
            progress = n_step / total_steps
            if plan.budget_s:
                progress = max(progress, (elapsed + plan.now() - started) / plan.budget_s)
            plan.schedule.step(progress)
            loss, patches = step(batch)
            losses.append(loss)
            n_step += 1
    train_seconds = plan.now() - started
    wall_seconds = time.perf_counter() - wall_started
    return {
        "epoch": epoch,
        "train_loss": float(np.mean(losses)),
        "lr": step.optimizer.param_groups[0]["lr"],
        "train_seconds": train_seconds,
        "wall_seconds": wall_seconds,
        "patches": len(losses) * patches,
        "val_dice": float("nan"),
    }


def dice_columns(val: Mapping[str, Any], classes: Sequence[str]) -> dict[str, float]:
    """``val_dice`` and ``val_dice_{class}`` of each foreground class, from a validation."""
    return {
        "val_dice": val["dice"],
        **{f"val_dice_{classes[k]}": d for k, d in enumerate(val["dice_per_class"], start=1)},
    }


@dataclass
class SegmenterValidation:
    """Sliding-window validation of the segmenter on ``items`` every ``every`` epochs (and
    after the last), with ``overlap`` between windows."""

    items: Sequence[Mapping[str, Any]]
    plans: Mapping[str, Any]
    device: torch.device
    precision: str
    overlap: float
    every: int

    def due(self, epoch: int, last: bool) -> bool:
        return bool(self.items) and (epoch % self.every == 0 or last)

    def __call__(
        self, model: torch.nn.Module, epoch: int, progress: SegmenterProgress
    ) -> dict[str, float]:
        """Validate ``model`` after ``epoch`` and keep it in ``progress`` when it is the best;
        the history row's ``val_dice`` columns and ``val_seconds``."""
        started = time.perf_counter()
        val = validate_segmenter(
            model, self.items, self.plans, self.device, self.precision, self.overlap
        )
        columns = dice_columns(val, self.plans["classes"])
        columns["val_seconds"] = time.perf_counter() - started
        progress.consider(epoch, val, self.plans["classes"], model)
        return columns
