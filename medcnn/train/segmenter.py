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
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.losses import DiceCELoss
from monai.utils import set_determinism

from medcnn.config import section_defaults
from medcnn.hardware import autocast, resolve_precision
from medcnn.io.files import finite
from medcnn.models.bundle import save_bundle
from medcnn.models.factory import build_network
from medcnn.train.checkpoint import (
    CHECKPOINT,
    epoch_seed,
    load_checkpoint,
    restore,
    rng_state,
    save_checkpoint,
    set_rng_state,
    settings_digest,
    training_state,
)
from medcnn.train.loaders import segmenter_loader
from medcnn.train.schedules import PolySchedule
from medcnn.train.validation import validate_segmenter
from medcnn.transforms.segmentation import IMAGE, LABEL

log = logging.getLogger(__name__)


#: Trainer settings that are not configuration (the schema has no key for them).
FIXED_SETTINGS: dict[str, Any] = {"warmup_epochs": 1, "val_every": 1, "class_weights": None}
#: Keys of the task's ``segmentation:`` section that the trainer reads with ``train:``.
SEGMENTATION_KEYS = ("samples_per_image", "positive_fraction", "scale_range", "overlap")
#: Optimiser steps per epoch where ``train.iterations_per_epoch`` is null (the schema's "Null: 25").
ITERATIONS_PER_EPOCH = 25


def settings_of(task_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The training settings: the schema's defaults (``train:`` and :data:`SEGMENTATION_KEYS`
    of ``segmentation:``), :data:`FIXED_SETTINGS`, then the task's ``train:`` and the
    :data:`SEGMENTATION_KEYS` of its ``segmentation:`` over them (the configured task's own
    key names).

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
        **FIXED_SETTINGS,
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
    seed = int(settings["seed"])
    set_determinism(seed=seed)
    fingerprint = fingerprint or settings_digest(
        dict(plans), settings, len(train_items), len(val_items)
    )
    network = dict(plans["network"])
    model = build_network(**network).to(device)
    weights = settings["class_weights"]
    loss_fn = DiceCELoss(
        to_onehot_y=True,
        softmax=True,
        include_background=False,
        # Batch Dice: a patch without foreground does not make the Dice term meaningless.
        batch=True,
        weight=torch.as_tensor(weights, dtype=torch.float32, device=device) if weights else None,
    )
    dataset, loader, generator = segmenter_loader(train_items, plans, settings, device)
    iterations = int(settings["iterations_per_epoch"])
    epochs = int(settings["epochs"])
    optimizer = torch.optim.AdamW(
        model.parameters(),
        lr=float(settings["learning_rate"]),
        weight_decay=float(settings["weight_decay"]),
    )
    schedule = PolySchedule(
        optimizer, float(settings["learning_rate"]), float(settings["warmup_epochs"]) / epochs
    )
    budget_s = max_minutes * 60.0 if max_minutes else None
    if clock not in ("wall", "cpu"):
        raise ValueError(f"clock {clock!r} must be 'wall' or 'cpu'")

    def now() -> float:
        if clock == "cpu":
            return time.process_time() / max(1, int(threads))
        return time.perf_counter()

    checkpoint_path = out / CHECKPOINT
    state = load_checkpoint(checkpoint_path, fingerprint) if settings["checkpoint"] else None
    precision, precision_info = _precision(state, str(settings["precision"]), plans, device, model)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    history: list[dict[str, Any]] = []
    best: dict[str, Any] = {"epoch": 0, "val_dice": -1.0}
    best_state: dict[str, torch.Tensor] = {}
    start_epoch, elapsed, resumed_from, stop_reason = 1, 0.0, None, "epochs"
    resumable = {"model": model, "optimizer": optimizer, "scheduler": schedule, "scaler": scaler}
    if state is not None:
        restore(state, resumable)
        history, best, best_state = state["history"], state["best"], state["best_state"]
        elapsed = float(state["elapsed"])
        set_rng_state(state["rng"])
        start_epoch = resumed_from = int(state["epoch"]) + 1
        stop_reason = state.get("stop_reason", "epochs")
        log.info("resuming from %s after epoch %d", checkpoint_path, state["epoch"])
        if state.get("finished"):
            start_epoch = epochs + 1

    total_steps = epochs * iterations
    for epoch in range(start_epoch, epochs + 1):
        torch.manual_seed(epoch_seed(seed, epoch))
        generator.manual_seed(epoch_seed(seed, epoch))
        dataset.transform.set_random_state(seed=epoch_seed(seed, epoch))
        model.train()
        started = now()
        wall_started = time.perf_counter()
        losses: list[float] = []
        step = (epoch - 1) * iterations
        batches = iter(loader)
        for _ in range(iterations):
            try:
                batch = next(batches)
            except StopIteration:
                batches = iter(loader)
                batch = next(batches)
            progress = step / total_steps
            if budget_s:
                progress = max(progress, (elapsed + now() - started) / budget_s)
            schedule.step(progress)
            loss, patches = _step(model, batch, loss_fn, optimizer, scaler, device, precision)
            losses.append(loss)
            step += 1
        train_seconds = now() - started
        wall_seconds = time.perf_counter() - wall_started
        elapsed += train_seconds
        out_of_time = budget_s is not None and elapsed >= budget_s
        last = epoch == epochs or out_of_time
        record: dict[str, Any] = {
            "epoch": epoch,
            "train_loss": float(np.mean(losses)),
            "lr": optimizer.param_groups[0]["lr"],
            "train_seconds": train_seconds,
            "wall_seconds": wall_seconds,
            "patches": len(losses) * patches,
            "val_dice": float("nan"),
        }
        if val_items and (epoch % int(settings["val_every"]) == 0 or last):
            v0 = time.perf_counter()
            val = validate_segmenter(
                model, val_items, plans, device, precision, float(settings["overlap"])
            )
            record["val_dice"] = val["dice"]
            for k, d in enumerate(val["dice_per_class"], start=1):
                record[f"val_dice_{plans['classes'][k]}"] = d
            record["val_seconds"] = time.perf_counter() - v0
            if val["dice"] > best["val_dice"]:
                best = {
                    "epoch": epoch,
                    "val_dice": val["dice"],
                    **{
                        f"val_dice_{plans['classes'][k]}": d
                        for k, d in enumerate(val["dice_per_class"], start=1)
                    },
                }
                best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        elif not val_items:
            best = {"epoch": epoch, "val_dice": float("nan")}
            best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        history.append(record)
        log.info(
            "epoch %d/%d loss %.4f val_dice %.4f lr %.2e (%.1fs)",
            *(epoch, epochs, record["train_loss"], record["val_dice"], record["lr"]),
            train_seconds,
        )
        if out_of_time:
            stop_reason = f"time budget ({max_minutes} min)"
        if settings["checkpoint"]:
            save_checkpoint(
                checkpoint_path,
                training_state(
                    fingerprint,
                    epoch,
                    resumable,
                    history=history,
                    best=best,
                    best_state=best_state,
                    elapsed=elapsed,
                    rng=rng_state(),
                    finished=out_of_time,
                    stop_reason=stop_reason,
                    precision=precision,
                ),
            )
        if out_of_time:
            log.info("time budget of %s min used after epoch %d", max_minutes, epoch)
            break

    model.load_state_dict(best_state)
    model.eval()
    task_name = plans.get("task", "task")
    metrics = {
        "task": task_name,
        "kind": plans.get("kind", "segmentation"),
        "classes": list(plans["classes"]),
        "best_epoch": best["epoch"],
        "val_dice": best["val_dice"],
        "best": best,
        "epochs_run": len(history),
        "stop_reason": stop_reason,
        "train_seconds": elapsed,
        "clock": clock,
        "train_wall_seconds": sum(h.get("wall_seconds", 0.0) for h in history),
        "iterations_per_epoch": iterations,
        "n_train_images": len(train_items),
        "n_val_images": len(val_items),
        "device": str(device),
        "precision": precision,
        "precision_info": precision_info,
        "threads": threads,
        "resumed_from_epoch": resumed_from,
        "final_train_loss": history[-1]["train_loss"] if history else None,
    }
    bundle_name = name or f"{task_name}-{network['name']}"
    _write_fold(out, model, bundle_name, plans, task_cfg, metrics, history)
    # The bundle is whole: the checkpoint has done its job.
    checkpoint_path.unlink(missing_ok=True)
    return metrics


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


def _step(
    model: torch.nn.Module,
    batch: Mapping[str, torch.Tensor],
    loss_fn: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    device: torch.device,
    precision: str,
) -> tuple[float, int]:
    """One optimiser step on a batch of patches; (its loss, the patches in it)."""
    images = batch[IMAGE].to(device, non_blocking=True).float()
    labels = batch[LABEL].to(device, non_blocking=True).long()
    optimizer.zero_grad(set_to_none=True)
    with autocast(device, precision):
        logits = model(images)
    loss = loss_fn(logits.float(), labels)
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)
    torch.nn.utils.clip_grad_norm_(model.parameters(), 12.0)
    scaler.step(optimizer)
    scaler.update()
    return float(loss.detach()), int(images.shape[0])


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
