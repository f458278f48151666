"""Train an image classifier (MONAI DenseNet121 by default) on one fold of a patient-level split.

Writes ``results/models/{task}/fold{k}/``: the model bundle (``model.pt`` + ``bundle.json``),
``metrics.json``, ``history.csv``, and the task config and plans it was trained with. While
training, ``checkpoint.pt`` holds everything needed to go on after the last finished epoch
(weights, optimiser, schedule, loss scaler, history, best epoch so far); a job killed at any
moment and run again resumes from it and ends where the uninterrupted run would have ended,
because every epoch draws its shuffling and augmentation from ``(seed, epoch)`` alone.

Started by ``torchrun`` (``resources.train.gpu`` > 1, see :mod:`medcnn.train.distributed`),
every rank trains on its share of each global batch of ``train.batch_size`` images; rank 0
alone validates (the whole validation set, so the numbers are a single process's), decides,
and writes the checkpoint, the bundle and the log.

Label schemes (binary, multi-class, multi-label) are :class:`medcnn.data.labels.LabelScheme`;
the network has one logit per label.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.utils import set_determinism

from medcnn.data.labels import LabelScheme
from medcnn.hardware import autocast, resolve_precision
from medcnn.models.factory import build_network, load_initial_weights
from medcnn.train import distributed
from medcnn.train.checkpoint import (
    CHECKPOINT,
    epoch_seed,
    load_checkpoint,
    restore,
    save_checkpoint,
    training_state,
)
from medcnn.train.loaders import classifier_loader
from medcnn.train.schedules import lr_schedule
from medcnn.train.validation import validate_classifier
from medcnn.transforms.radiograph import KEY

log = logging.getLogger(__name__)


def train_one_epoch(
    model: torch.nn.Module,
    loader: torch.utils.data.DataLoader,
    loss_fn: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler,
    device: torch.device,
    precision: str = "fp32",
    memory_format: torch.memory_format = torch.contiguous_format,
    multiclass: bool = False,
) -> tuple[list[float], int, float]:
    """One pass over ``loader`` (batches ``{"image": (B, 1, H, W), "label": (B, labels)}``).

    Returns:
        (loss per step, images seen, seconds spent waiting for the loader).
    """
    model.train()
    losses: list[float] = []
    seen, wait = 0, 0.0
    waited = time.perf_counter()
    for batch in loader:
        wait += time.perf_counter() - waited
        images = batch[KEY].to(device, non_blocking=True)
        images = images.contiguous(memory_format=memory_format)
        labels = batch["label"].float().to(device, non_blocking=True)
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, precision):
            logits = model(images)
        # The loss in fp32: bf16 logits would round the small differences it is made of.
        logits = logits.float()
        loss = loss_fn(logits, labels.argmax(dim=1)) if multiclass else loss_fn(logits, labels)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        losses.append(float(loss.detach()))
        seen += len(images)
        waited = time.perf_counter()
    return losses, seen, wait


def class_balance(targets: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Loss weights per label and sampling weights per image, from training targets.

    Args:
        targets: 0/1 ``(images, labels)``.
        kind: the label scheme's kind.

    Returns:
        (``pos_weight``/class weights ``(labels,)``, sampling weight per image ``(images,)``):
        binary and multi-label weigh each label's positives by negatives/positives (the
        BCE ``pos_weight``); multi-class weighs each class by images / (classes * count).
        Sampling weights make every class (multi-label: every image's rarest positive
        label, or "no finding") equally likely to be drawn.
    """
    n = len(targets)
    positives = targets.sum(axis=0)
    if kind == "multiclass":
        loss_weights = n / (targets.shape[1] * np.maximum(positives, 1.0))
        draw = 1.0 / np.maximum(positives[targets.argmax(axis=1)], 1.0)
        return loss_weights.astype(np.float32), draw
    loss_weights = (n - positives) / np.maximum(positives, 1.0)
    if kind == "binary":
        counts = np.where(targets[:, 0] > 0, positives[0], n - positives[0])
        return loss_weights.astype(np.float32), 1.0 / np.maximum(counts, 1.0)
    negatives_only = targets.sum(axis=1) == 0
    rarest = np.where(targets > 0, positives[None, :], np.inf).min(axis=1)
    counts = np.where(negatives_only, max(int(negatives_only.sum()), 1), rarest)
    return loss_weights.astype(np.float32), 1.0 / np.maximum(counts, 1.0)


def train_fold(
    train_items: list[dict[str, Any]],
    val_items: list[dict[str, Any]],
    scheme: LabelScheme,
    task: dict[str, Any],
    plans: dict[str, Any],
    out: Path,
    device: torch.device,
    threads: int = 1,
    fingerprint: str = "",
) -> tuple[torch.nn.Module, dict[str, Any], list[dict[str, float]]]:
    """Train one model, resuming from ``out/checkpoint.pt`` when it matches ``fingerprint``.

    Args:
        train_items: ``{"image": .npy path, "label": float32 (labels,), "subject": str}``.
        val_items: the same for validation (plus subgroup columns, as text).
        scheme: the task's label scheme.
        task: the task's validated config.
        plans: the task's ``plans.json``.
        out: the fold folder (the checkpoint lives there).
        device: training device.
        threads: CPU threads of the job (decides ``num_workers: auto``).
        fingerprint: identifies the data and settings; a checkpoint with another is ignored.

    Returns:
        (the model at its best epoch, in eval mode; a summary for ``metrics.json``;
        the per-epoch history). On the other ranks of a DDP job: the model at its last
        epoch, an empty summary and history.
    """
    settings = task["train"]
    seed = int(settings["seed"])
    set_determinism(seed=seed)
    size = int(plans["size"])
    network = {
        "name": task["network"]["name"],
        "dims": 2,
        "in_channels": 1,
        "out_channels": scheme.n_outputs,
    }
    model = build_network(**network)
    initial = None
    if task["network"].get("weights"):
        initial = load_initial_weights(model, task["network"]["weights"])
    memory_format = torch.channels_last if settings["channels_last"] else torch.contiguous_format
    model = model.to(device=device, memory_format=memory_format)

    train_targets = np.stack([it["label"] for it in train_items])
    val_targets = np.stack([it["label"] for it in val_items])
    # Validation images are few and fixed: hold them as one array, predicted in batches.
    val_images = np.stack([np.load(it[KEY]) for it in val_items])
    loss_weights, draw_weights = class_balance(train_targets, scheme.kind)
    balance = settings["balance"]
    weight = torch.as_tensor(loss_weights, device=device) if balance == "pos_weight" else None
    if scheme.kind == "multiclass":
        loss_fn = torch.nn.CrossEntropyLoss(weight=weight)
    else:
        loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=weight)
    dataset, sampler, loader, generator, workers = classifier_loader(
        train_items, draw_weights, settings, size, device, threads
    )
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=settings["learning_rate"], weight_decay=settings["weight_decay"]
    )
    scheduler = lr_schedule(optimizer, settings, settings["epochs"] * max(1, len(loader)))
    checkpoint_path = out / CHECKPOINT
    state = load_checkpoint(checkpoint_path, fingerprint) if settings["checkpoint"] else None
    precision, precision_info = _precision(
        state, settings, device, model, val_images, memory_format
    )
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")

    history: list[dict[str, float]] = []
    best: dict[str, Any] = {"epoch": 0, "val_auroc": -1.0, "val_loss": float("inf")}
    best_state: dict[str, torch.Tensor] = {}
    best_probs = np.zeros((0, scheme.n_outputs))
    start_epoch, bad_epochs, resumed_from = 1, 0, None
    resumable = {"model": model, "optimizer": optimizer, "scheduler": scheduler, "scaler": scaler}
    if state is not None:
        restore(state, resumable)
        history, best, bad_epochs = state["history"], state["best"], state["bad_epochs"]
        best_state, best_probs = state["best_state"], state["best_probs"].numpy()
        start_epoch = resumed_from = state["epoch"] + 1
        log.info("resuming from %s after epoch %d", checkpoint_path, state["epoch"])
    # Wrapped after loading (the checkpoint holds the bare network's state_dict); DDP's
    # constructor sends rank 0's weights to every rank.
    trained = distributed.wrap(model, device)
    model = distributed.unwrap(trained)  # validated and saved without the ``module.`` prefix

    patience = settings["patience"]
    stopped_early = bool(state and state.get("stopped"))
    for epoch in range(start_epoch, settings["epochs"] + 1):
        if stopped_early:
            break
        # Everything random in an epoch follows from (seed, epoch): a resumed run replays
        # the epochs it missed exactly. (Workers reseed from the generator, see MONAI's
        # worker_init_fn; without workers the transforms are reseeded here.)
        torch.manual_seed(epoch_seed(seed, epoch))
        generator.manual_seed(epoch_seed(seed, epoch))
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        # Each rank its own augmentation draws (rank 0's are those of a single process).
        dataset.transform.set_random_state(seed=epoch_seed(seed, epoch) + distributed.rank())
        start = time.perf_counter()
        losses, epoch_images, epoch_wait = train_one_epoch(
            trained,
            loader,
            loss_fn,
            optimizer,
            scheduler,
            scaler,
            device,
            precision,
            memory_format,
            multiclass=scheme.kind == "multiclass",
        )
        seconds = time.perf_counter() - start
        train_loss = distributed.all_reduce_mean(np.mean(losses) if losses else float("nan"))
        epoch_images = int(distributed.all_reduce_sum(epoch_images))
        if not distributed.is_main():
            # Rank 0 validates and decides; the others wait for its decision.
            stopped_early = distributed.broadcast(None)
            continue
        probs, val_loss, val_auc = validate_classifier(
            model, val_images, val_targets, scheme, device, precision, settings["channels_last"]
        )
        record = {
            "epoch": epoch,
            "train_loss": train_loss,
            "val_loss": val_loss,
            "val_auroc": val_auc,
            "lr": optimizer.param_groups[0]["lr"],
            "seconds": time.perf_counter() - start,
            "train_seconds": seconds,
            "images": epoch_images,
            "images_per_second": epoch_images / seconds if seconds else 0.0,
            "data_wait_seconds": epoch_wait,
        }
        history.append(record)
        _log_epoch(record, settings["epochs"])
        # Best by validation AUROC, ties broken by the lower loss.
        # (An undefined AUROC, one class in validation, counts as 0 so a model is still kept.)
        score = val_auc if np.isfinite(val_auc) else 0.0
        if (score, -val_loss) > (best["val_auroc"], -best["val_loss"]):
            best = {"epoch": epoch, "val_auroc": score, "val_loss": val_loss}
            best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            best_probs = probs
            bad_epochs = 0
        else:
            bad_epochs += 1
        stopped_early = patience is not None and bad_epochs >= patience
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
                    best_probs=torch.as_tensor(best_probs),
                    bad_epochs=bad_epochs,
                    stopped=stopped_early,
                    precision=precision,
                    precision_info=precision_info,
                ),
            )
        if stopped_early:
            log.info("early stop after epoch %d: %d epochs without improvement", epoch, patience)
        distributed.broadcast(stopped_early)

    distributed.check_replicas(trained)
    if not distributed.is_main():
        model.eval()
        return model, {}, []
    model.load_state_dict(best_state)  # set in epoch 1 at the latest (score >= 0 > -1)
    model.eval()
    summary = {
        "network": network,
        "best": best,
        "best_probabilities": best_probs,
        "val_targets": val_targets,
        "precision": precision,
        "precision_info": precision_info,
        "channels_last": bool(settings["channels_last"]),
        "num_workers": workers,
        "balance": balance,
        "initial_weights": initial,
        "stopped_early": stopped_early,
        "epochs_run": len(history),
        "resumed_from_epoch": resumed_from,
        **_throughput(history),
    }
    return model, summary, history


def _precision(
    state: dict[str, Any] | None,
    settings: dict[str, Any],
    device: torch.device,
    model: torch.nn.Module,
    val_images: np.ndarray,
    memory_format: torch.memory_format,
) -> tuple[str, dict[str, Any] | None]:
    """The arithmetic precision: the checkpoint's when resuming, else ``train.precision``
    resolved (``auto`` is timed on rank 0, and every rank takes its choice)."""
    if state is not None:
        return state["precision"], state["precision_info"]
    precision, precision_info = None, None
    if distributed.is_main():
        example = torch.as_tensor(val_images[: min(4, len(val_images))], device=device)
        precision, precision_info = resolve_precision(
            settings["precision"],
            device,
            model,
            example.contiguous(memory_format=memory_format),
        )
    return distributed.broadcast((precision, precision_info))


def _log_epoch(record: dict[str, float], epochs: int) -> None:
    log.info(
        "epoch %d/%d train_loss %.4f val_loss %.4f val_auroc %.3f (%.1fs, %.1fs waiting for data)",
        record["epoch"],
        epochs,
        record["train_loss"],
        record["val_loss"],
        record["val_auroc"],
        record["seconds"],
        record["data_wait_seconds"],
    )


def _throughput(history: list[dict[str, float]]) -> dict[str, float | None]:
    """Images per second and the share of time spent waiting for data, over every epoch
    (those before a resume included)."""
    train_seconds = sum(h["train_seconds"] for h in history)
    n_seen = sum(h["images"] for h in history)
    wait_seconds = sum(h["data_wait_seconds"] for h in history)
    return {
        "train_images_per_second": n_seen / train_seconds if train_seconds else None,
        "data_wait_fraction": wait_seconds / train_seconds if train_seconds else None,
    }
