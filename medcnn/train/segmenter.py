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
from pathlib import Path
from typing import Any

import torch
from monai.losses import DiceCELoss
from monai.utils import set_determinism

from medcnn.config import section_defaults
from medcnn.hardware import resolve_precision
from medcnn.io.files import finite
from medcnn.models.bundle import save_bundle
from medcnn.models.factory import build_network
from medcnn.train.checkpoint import (
    CHECKPOINT,
    cpu_state,
    load_checkpoint,
    restore,
    save_checkpoint,
    seed_epoch,
    set_rng_state,
    settings_digest,
    training_state,
)
from medcnn.train.loaders import segmenter_loader
from medcnn.train.schedules import PolySchedule
from medcnn.train.segmenter_epoch import (
    EpochPlan,
    SegmenterProgress,
    SegmenterStep,
    dice_columns,
    train_epoch,
)
from medcnn.train.validation import validate_segmenter

log = logging.getLogger(__name__)


#: Trainer settings that are not configuration (the schema has no key for them).
FIXED_SETTINGS: dict[str, Any] = {"warmup_epochs": 1, "val_every": 1, "class_weights": None}
#: Keys of the task's ``segmentation:`` section that the trainer reads with ``train:``.
SEGMENTATION_KEYS = ("samples_per_image", "overlap")


def settings_of(task_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The training settings: the schema's defaults (``train:`` and :data:`SEGMENTATION_KEYS`),
    :data:`FIXED_SETTINGS`, then ``task_cfg["train"]`` over them.

    The workflow passes every key (the validated task); the defaults serve a direct caller,
    and are the schema's, so they cannot disagree with the workflow's.
    """
    defaults = {
        **section_defaults("train"),
        **{k: v for k, v in section_defaults("segmentation").items() if k in SEGMENTATION_KEYS},
    }
    return {**defaults, **FIXED_SETTINGS, **(task_cfg.get("train") or {})}


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
        task_cfg: the task's config; ``train`` settings over :func:`settings_of`'s defaults.
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
    seed = int(settings["seed"])
    set_determinism(seed=seed)
    fingerprint = fingerprint or settings_digest(
        dict(plans), settings, len(train_items), len(val_items)
    )
    network = dict(plans["network"])
    model = build_network(**network).to(device)
    loss_fn = _loss_fn(settings["class_weights"], device)
    dataset, loader, generator = segmenter_loader(
        train_items, plans, task_cfg, int(settings["samples_per_image"]), device
    )
    iterations = int(settings["iterations_per_epoch"] or max(1, len(loader)))
    epochs = int(settings["epochs"])
    optimizer = torch.optim.AdamW(
        model.parameters(),
        lr=float(settings["learning_rate"]),
        weight_decay=float(settings["weight_decay"]),
    )
    schedule = PolySchedule(
        optimizer, float(settings["learning_rate"]), float(settings["warmup_epochs"]) / epochs
    )
    now = _clock(clock, threads)
    checkpoint_path = out / CHECKPOINT
    state = load_checkpoint(checkpoint_path, fingerprint) if settings["checkpoint"] else None
    precision, precision_info = _precision(state, str(settings["precision"]), plans, device, model)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    progress = SegmenterProgress.of(state, epochs)
    resumable = {"model": model, "optimizer": optimizer, "scheduler": schedule, "scaler": scaler}
    if state is not None:
        restore(state, resumable)
        set_rng_state(state["rng"])
        log.info("resuming from %s after epoch %d", checkpoint_path, state["epoch"])

    step = SegmenterStep(model, loss_fn, optimizer, scaler, device, precision)
    epoch_plan = EpochPlan(loader, schedule, iterations, epochs, _budget(max_minutes), now)
    for epoch in range(progress.start_epoch, epochs + 1):
        seed_epoch(seed, epoch, generator, dataset)
        record = train_epoch(step, epoch_plan, epoch, progress.elapsed)
        progress.elapsed += record["train_seconds"]
        out_of_time = epoch_plan.budget_s is not None and progress.elapsed >= epoch_plan.budget_s
        if val_items and (
            epoch % int(settings["val_every"]) == 0 or epoch == epochs or out_of_time
        ):
            v0 = time.perf_counter()
            val = validate_segmenter(
                model, val_items, plans, device, precision, float(settings["overlap"])
            )
            record.update(dice_columns(val, plans["classes"]))
            record["val_seconds"] = time.perf_counter() - v0
            progress.consider(epoch, val, plans["classes"], model)
        elif not val_items:
            progress.best = {"epoch": epoch, "val_dice": float("nan")}
            progress.best_state = cpu_state(model)
        progress.history.append(record)
        log.info(
            "epoch %d/%d loss %.4f val_dice %.4f lr %.2e (%.1fs)",
            *(epoch, epochs, record["train_loss"], record["val_dice"], record["lr"]),
            record["train_seconds"],
        )
        if out_of_time:
            progress.stop_reason = f"time budget ({max_minutes} min)"
        if settings["checkpoint"]:
            saved = progress.saved(finished=out_of_time)
            state = training_state(fingerprint, epoch, resumable, **saved, precision=precision)
            save_checkpoint(checkpoint_path, state)
        if out_of_time:
            log.info("time budget of %s min used after epoch %d", max_minutes, epoch)
            break

    model.load_state_dict(progress.best_state)
    model.eval()
    task_name = plans.get("task", "task")
    metrics = {
        "task": task_name,
        "kind": plans.get("kind", "segmentation"),
        "classes": list(plans["classes"]),
        "best_epoch": progress.best["epoch"],
        "val_dice": progress.best["val_dice"],
        "best": progress.best,
        "epochs_run": len(progress.history),
        "stop_reason": progress.stop_reason,
        "train_seconds": progress.elapsed,
        "clock": clock,
        "train_wall_seconds": sum(h.get("wall_seconds", 0.0) for h in progress.history),
        "iterations_per_epoch": iterations,
        "n_train_images": len(train_items),
        "n_val_images": len(val_items),
        "device": str(device),
        "precision": precision,
        "precision_info": precision_info,
        "threads": threads,
        "resumed_from_epoch": progress.resumed_from,
        "final_train_loss": progress.history[-1]["train_loss"] if progress.history else None,
    }
    bundle_name = name or f"{task_name}-{network['name']}"
    _write_fold(out, model, bundle_name, plans, task_cfg, metrics, progress.history)
    # The bundle is whole: the checkpoint has done its job.
    checkpoint_path.unlink(missing_ok=True)
    return metrics


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
    example = torch.zeros(
        int(plans["batch_size"]),
        int(plans["n_channels"]),
        *map(int, plans["patch_size"]),
        device=device,
    )
    return resolve_precision(setting, device, model, example, repeats=2)


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
