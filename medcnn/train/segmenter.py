"""Train a segmentation network (MONAI U-Net by default) on preprocessed arrays.

Writes into ``out_dir``: the model bundle of the best validation epoch (``model.pt`` +
``bundle.json`` with the plans and classes), ``metrics.json``, ``history.csv``,
``plans.json`` and ``config.json``. While training, ``checkpoint.pt`` holds everything needed
to go on after the last finished epoch (weights, optimiser, schedule, loss scaler, history,
best weights so far, elapsed time, random states); a job killed at any moment and run again
resumes from it. As in :mod:`medcnn.train.classifier`, each epoch draws its sampling and
augmentation from ``(seed, epoch)``, so without a time budget a resumed run ends where the
uninterrupted one would have.

Loss: Dice + cross-entropy (softmax over classes, labels one-hot). Optimiser: AdamW with a
short linear warm-up and polynomial decay (nnU-Net's poly schedule, exponent 0.9): on a CPU
budget of minutes, Adam gets further in few steps than nnU-Net's SGD. With a time budget the
schedule runs on whichever is further along, the epochs or the minutes, so the learning rate
has decayed when the time is up.
"""

from __future__ import annotations

import csv
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from monai.losses import DiceCELoss
from monai.utils import set_determinism

from medcnn.config import section_defaults
from medcnn.hardware import autocast, resolve_compile, resolve_precision
from medcnn.io.files import finite
from medcnn.models.bundle import save_bundle
from medcnn.models.factory import build_network
from medcnn.train.checkpoint import (
    CHECKPOINT,
    Checkpointer,
    cpu_state,
    load_checkpoint,
    resume,
    save_checkpoint,
    seed_epoch,
    set_rng_state,
    settings_digest,
)
from medcnn.train.loaders import segmenter_loader
from medcnn.train.schedules import PolySchedule, adamw
from medcnn.train.segmenter_epoch import (
    EpochPlan,
    SegmenterProgress,
    SegmenterStep,
    SegmenterValidation,
    train_epoch,
)

log = logging.getLogger(__name__)


#: Cross-entropy weights of ``train.class_weights: auto`` for an instance task's classes.
AUTO_CLASS_WEIGHTS = {"background": 1.0, "interior": 1.0, "boundary": 2.0, "touching": 4.0}
#: Keys of the task's ``segmentation:`` section that the trainer reads with ``train:``.
SEGMENTATION_KEYS = ("samples_per_image", "positive_fraction", "scale_range", "overlap")
#: Optimiser steps per epoch where ``train.iterations_per_epoch`` is null (the schema's "Null: 25").
ITERATIONS_PER_EPOCH = 25


def settings_of(task_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The training settings: the schema's defaults (``train:`` and :data:`SEGMENTATION_KEYS`
    of ``segmentation:``), then the task's ``train:`` and the :data:`SEGMENTATION_KEYS` of its
    ``segmentation:`` over them (the configured task's own key names).

    The workflow passes every key (the validated task); the defaults serve a direct caller,
    and are the schema's, so they cannot disagree with the workflow's.
    """
    defaults = {
        **section_defaults("train"),
        **{k: v for k, v in section_defaults("segmentation").items() if k in SEGMENTATION_KEYS},
    }
    segmentation = task_cfg.get("segmentation") or {}
    settings = {
        **defaults,
        **(task_cfg.get("train") or {}),
        **{k: segmentation[k] for k in SEGMENTATION_KEYS if k in segmentation},
    }
    settings["iterations_per_epoch"] = settings["iterations_per_epoch"] or ITERATIONS_PER_EPOCH
    return settings


def train_segmenter(
    train_items: Sequence[Mapping[str, Any]],
    val_items: Sequence[Mapping[str, Any]],
    plans: Mapping[str, Any],
    task_cfg: Mapping[str, Any],
    out_dir: str | Path,
    device: torch.device | str = "cpu",
    threads: int = 1,
    max_minutes: float | None = None,
    fingerprint: str = "",
    name: str | None = None,
    clock: str = "wall",
) -> dict[str, Any]:
    """Train one segmentation model; resumes from ``out_dir/checkpoint.pt`` when it matches.

    Args:
        train_items: ``{"image": float32 (C, *spatial) array or .npy path, "label": uint8
            (1, *spatial) or .npy path}`` from :func:`~medcnn.transforms.segmentation.
            preprocess_case`.
        val_items: the same, validated every ``val_every`` epochs (and after the last) by
            sliding-window inference; empty: the last epoch's model is kept.
        plans: the task's plans (``patch_size``, ``batch_size``, ``classes``, ``network``).
        task_cfg: the configured task (its own key names): ``train`` and ``segmentation``
            settings over :func:`settings_of`'s defaults.
        out_dir: the fold folder (created).
        device: training device.
        threads: CPU threads for torch.
        max_minutes: stop after the epoch during which this much training time has passed
            (counted over resumes too); the schedule decays to zero by then.
        fingerprint: identifies data and settings (default: made from plans, settings and
            the number of items).
        name: the bundle's name (default ``{task}-{network}``).
        clock: what ``max_minutes`` and the recorded training times count: ``wall`` (seconds
            on the clock) or ``cpu`` (this process's CPU seconds divided by ``threads``: the
            minutes the run would take on ``threads`` cores of its own, which is what a
            budget means on a machine shared with other jobs).

    Returns:
        The metrics written to ``metrics.json``.

    Raises:
        ValueError: no training items.
    """
    if not train_items:
        raise ValueError("train_segmenter: no training items")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(device)
    torch.set_num_threads(max(1, int(threads)))
    settings = settings_of(task_cfg)
    set_determinism(seed=int(settings["seed"]))
    n_items = (len(train_items), len(val_items))
    fingerprint = fingerprint or settings_digest(dict(plans), settings, *n_items)
    parts = SegmenterParts.build(train_items, plans, task_cfg, settings, device)
    now = _clock(clock, threads)
    checkpoint_path = out / CHECKPOINT
    state = load_checkpoint(checkpoint_path, fingerprint) if settings["checkpoint"] else None
    precision, info = _precision(state, str(settings["precision"]), plans, device, parts.model)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    progress = SegmenterProgress.of(state, parts.epochs)
    resumable = parts.resumable(scaler)
    if state is not None:
        resume(state, resumable, checkpoint_path)
        set_rng_state(state["rng"])
    save = Checkpointer(checkpoint_path, fingerprint, resumable, {"precision": precision})
    save.enabled, save.write = settings["checkpoint"], save_checkpoint  # (tests replace it)
    step = SegmenterStep(parts.model, parts.loss_fn, parts.optimizer, scaler, device, precision)
    budget = _budget(max_minutes)
    compiling = now()
    compile_info = _compile(step, settings["compile"], plans, device, max_minutes)
    spent = now() - compiling
    if budget is not None:  # the compile counts in the budget
        budget -= spent
    compile_info["budget_seconds"] = round(spent, 1)
    validation = SegmenterValidation(
        val_items, plans, device, precision, float(settings["overlap"]), int(settings["val_every"])
    )
    loop = (step, parts.plan(budget, now), validation)
    _run_epochs(progress, parts, *loop, save, max_minutes)
    parts.model.load_state_dict(progress.best_state)
    parts.model.eval()
    run = dict(device=str(device), precision=precision, precision_info=info, threads=threads)
    run["compile_info"] = compile_info
    metrics = _fold_metrics(plans, progress, clock, parts.iterations, n_items, run)
    bundle_name = name or f"{metrics['task']}-{plans['network']['name']}"
    _write_fold(out, parts.model, bundle_name, plans, task_cfg, metrics, progress.history)
    # The bundle is whole: the checkpoint has done its job.
    checkpoint_path.unlink(missing_ok=True)
    return metrics


@dataclass
class SegmenterParts:
    """The segmenter's network, loss, training data and optimisation, built from the plans
    and the settings."""

    model: torch.nn.Module
    loss_fn: torch.nn.Module
    dataset: Any
    loader: torch.utils.data.DataLoader
    generator: torch.Generator
    optimizer: torch.optim.Optimizer
    schedule: PolySchedule
    iterations: int
    epochs: int
    seed: int

    @classmethod
    def build(
        cls,
        train_items: Sequence[Mapping[str, Any]],
        plans: Mapping[str, Any],
        task_cfg: Mapping[str, Any],
        settings: Mapping[str, Any],
        device: torch.device,
    ) -> SegmenterParts:
        """The plans' network (AdamW, the poly schedule with its warm-up) and the loader of
        the training patches; ``iterations`` per epoch: the setting (null: 25, by settings_of)."""
        model = build_network(**dict(plans["network"])).to(device)
        loss_fn = _loss_fn(class_weights(settings["class_weights"], plans), device)
        dataset, loader, generator = segmenter_loader(train_items, plans, settings, device)
        iterations = int(settings["iterations_per_epoch"])
        epochs = int(settings["epochs"])
        optimizer = adamw(
            model.parameters(), float(settings["learning_rate"]), float(settings["weight_decay"])
        )
        schedule = PolySchedule(
            optimizer, float(settings["learning_rate"]), float(settings["warmup_epochs"]) / epochs
        )
        parts = (dataset, loader, generator, optimizer, schedule, iterations, epochs)
        return cls(model, loss_fn, *parts, seed=int(settings["seed"]))

    def resumable(self, scaler: torch.amp.GradScaler) -> dict[str, Any]:
        """The parts a checkpoint holds the ``state_dict`` of."""
        return {
            "model": self.model,
            "optimizer": self.optimizer,
            "scheduler": self.schedule,
            "scaler": scaler,
        }

    def plan(self, budget_s: float | None, now: Callable[[], float]) -> EpochPlan:
        return EpochPlan(self.loader, self.schedule, self.iterations, self.epochs, budget_s, now)


def _run_epochs(
    progress: SegmenterProgress,
    parts: SegmenterParts,
    step: SegmenterStep,
    plan: EpochPlan,
    validation: SegmenterValidation,
    save: Checkpointer,
    max_minutes: float | None,
) -> None:
    """The epochs of :func:`train_segmenter` from ``progress.start_epoch``: train, validate
    when due (without validation items every epoch is the best), ``save`` the checkpoint;
    stop after the last epoch or the one in which the time budget ran out."""
    for epoch in range(progress.start_epoch, plan.epochs + 1):
        seed_epoch(parts.seed, epoch, parts.generator, parts.dataset)
        record = train_epoch(step, plan, epoch, progress.elapsed)
        progress.elapsed += record["train_seconds"]
        out_of_time = plan.budget_s is not None and progress.elapsed >= plan.budget_s
        if validation.due(epoch, last=epoch == plan.epochs or out_of_time):
            record.update(validation(parts.model, epoch, progress))
        elif not validation.items:
            progress.best = {"epoch": epoch, "val_dice": float("nan")}
            progress.best_state = cpu_state(parts.model)
        progress.history.append(record)
        log.info(
            "epoch %d/%d loss %.4f val_dice %.4f lr %.2e (%.1fs)",
            *(epoch, plan.epochs, record["train_loss"], record["val_dice"], record["lr"]),
            record["train_seconds"],
        )
        if out_of_time:
            progress.stop_reason = f"time budget ({max_minutes} min)"
        save(epoch, **progress.saved(finished=out_of_time))
        if out_of_time:
            log.info("time budget of %s min used after epoch %d", max_minutes, epoch)
            break


def _fold_metrics(
    plans: Mapping[str, Any],
    progress: SegmenterProgress,
    clock: str,
    iterations: int,
    n_items: tuple[int, int],
    run: dict[str, Any],
) -> dict[str, Any]:
    """``metrics.json``: the best epoch, how the run went and where it ran (``run``: device,
    precision, its reason, threads)."""
    history = progress.history
    return {
        "task": plans.get("task", "task"),
        "kind": plans.get("kind", "segmentation"),
        "classes": list(plans["classes"]),
        "best_epoch": progress.best["epoch"],
        "val_dice": progress.best["val_dice"],
        "best": progress.best,
        "epochs_run": len(history),
        "stop_reason": progress.stop_reason,
        "train_seconds": progress.elapsed,
        "clock": clock,
        "train_wall_seconds": sum(h.get("wall_seconds", 0.0) for h in history),
        "iterations_per_epoch": iterations,
        "n_train_images": n_items[0],
        "n_val_images": n_items[1],
        **run,
        "resumed_from_epoch": progress.resumed_from,
        "final_train_loss": history[-1]["train_loss"] if history else None,
    }


def class_weights(setting: Any, plans: Mapping[str, Any]) -> list[float] | None:
    """The cross-entropy weights of ``train.class_weights``: a list as given (one per class
    of the plans), ``auto`` (:data:`AUTO_CLASS_WEIGHTS` for an instance task, none for a
    semantic one) or None.

    Raises:
        ValueError: a list whose length is not the number of classes.
    """
    classes = list(plans["classes"])
    if setting is None:
        return None
    if setting == "auto":
        if plans.get("kind") != "instance_segmentation":
            return None
        return [AUTO_CLASS_WEIGHTS.get(c, 1.0) for c in classes]
    weights = [float(w) for w in setting]
    if len(weights) != len(classes):
        raise ValueError(
            f"train.class_weights has {len(weights)} values for the {len(classes)} classes "
            f"{classes}"
        )
    return weights


def _loss_fn(weights: Sequence[float] | None, device: torch.device) -> torch.nn.Module:
    """Dice + cross-entropy over the softmax, labels one-hot, background left out of the Dice;
    ``weights``: the cross-entropy's class weights."""
    return DiceCELoss(
        to_onehot_y=True,
        softmax=True,
        include_background=False,
        # Batch Dice: a patch without foreground does not make the Dice term meaningless.
        batch=True,
        weight=torch.as_tensor(weights, dtype=torch.float32, device=device) if weights else None,
    )


def _budget(max_minutes: float | None) -> float | None:
    return max_minutes * 60.0 if max_minutes else None


def _clock(clock: str, threads: int) -> Callable[[], float]:
    """What the time budget counts: seconds on the clock (``wall``) or this process's CPU
    seconds divided by ``threads`` (``cpu``)."""
    if clock not in ("wall", "cpu"):
        raise ValueError(f"clock {clock!r} must be 'wall' or 'cpu'")

    def now() -> float:
        if clock == "cpu":
            return time.process_time() / max(1, int(threads))
        return time.perf_counter()

    return now


def _precision(
    state: Mapping[str, Any] | None,
    setting: str,
    plans: Mapping[str, Any],
    device: torch.device,
    model: torch.nn.Module,
) -> tuple[str, dict[str, Any]]:
    """The arithmetic precision: a resumed run keeps the one it started with; ``auto`` is AMP
    on CUDA and, on a CPU with native bf16 (AMX), bf16 when a timed forward + backward of
    this network on a patch batch is clearly faster."""
    if state is not None and state.get("precision"):
        return state["precision"], {"reason": "resumed"}
    return resolve_precision(setting, device, model, _example_batch(plans, device), repeats=3)


def _example_batch(plans: Mapping[str, Any], device: torch.device) -> torch.Tensor:
    """A training batch's shape, in zeros: what the precision and compile checks time."""
    return torch.zeros(
        int(plans["batch_size"]),
        # the network's inputs (2D-on-volume: the slice and its context slices per channel)
        int(plans["network"]["in_channels"]),
        *map(int, plans["patch_size"]),
        device=device,
    )


def _compile(
    step: SegmenterStep,
    setting: str | bool,
    plans: Mapping[str, Any],
    device: torch.device,
    max_minutes: float | None,
) -> dict[str, Any]:
    """``train.compile``: the step's compiled forward where it pays (or is asked for), for
    the training batch shape; what was decided and why."""
    example = _example_batch(plans, device)

    def train_pass(forward: Callable[[torch.Tensor], torch.Tensor]) -> None:
        with autocast(device, step.precision):
            out = forward(example)
        out.float().sum().backward()

    step.model.train()
    forward, info = resolve_compile(setting, device, step.model, train_pass, max_minutes)
    if forward is not step.model:
        step.compiled, step.compiled_shape = forward, tuple(example.shape)
    return info


def _write_fold(
    out: Path,
    model: torch.nn.Module,
    name: str,
    plans: Mapping[str, Any],
    task_cfg: Mapping[str, Any],
    metrics: dict[str, Any],
    history: list[dict[str, Any]],
) -> None:
    """The fold's bundle, ``history.csv``, ``metrics.json``, ``plans.json`` and ``config.json``."""
    save_bundle(
        out,
        model,
        {
            "name": name,
            "task": metrics["task"],
            "kind": metrics["kind"],
            "network": dict(plans["network"]),
            "plans": dict(plans),
            "classes": list(plans["classes"]),
            "metrics": metrics,
        },
    )
    columns: list[str] = []
    for row in history:
        columns += [k for k in row if k not in columns]
    with open(out / "history.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(history)
    (out / "metrics.json").write_text(json.dumps(finite(metrics), indent=2) + "\n")
    (out / "plans.json").write_text(json.dumps(dict(plans), indent=2) + "\n")
    (out / "config.json").write_text(json.dumps(dict(task_cfg), indent=2, default=str) + "\n")
