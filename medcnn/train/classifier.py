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
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.utils import set_determinism

from medcnn.data.labels import LabelScheme
from medcnn.hardware import resolve_precision
from medcnn.models.factory import build_network, load_initial_weights
from medcnn.train import distributed
from medcnn.train.checkpoint import (
    CHECKPOINT,
    Checkpointer,
    load_checkpoint,
    resume,
    seed_epoch,
)
from medcnn.train.classifier_epoch import (
    ClassifierStep,
    FoldProgress,
    finish_record,
    train_epoch,
    validate_both,
    weight_average,
)
from medcnn.train.loaders import classifier_loader
from medcnn.train.schedules import AnnealingSchedule, adamw, lr_schedule
from medcnn.train.validation import calibrate_classifier, validate_classifier
from medcnn.transforms.radiograph import KEY

log = logging.getLogger(__name__)

#: Share of ``train.epochs`` over which the schedule anneals once early stopping decides.
LANDING_SHARE = 0.1


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
    set_determinism(seed=int(settings["seed"]))
    model, network, initial, memory_format = _network(task, scheme.n_outputs, device)
    train_targets = np.stack([it["label"] for it in train_items])
    val_targets = np.stack([it["label"] for it in val_items])
    # Validation images are few and fixed: hold them as one array, predicted in batches.
    val_images = np.stack([np.load(it[KEY]) for it in val_items])
    loss_weights, draw_weights = class_balance(train_targets, scheme.kind)
    loss_fn = _loss_fn(scheme.kind, settings["balance"], loss_weights, device)
    dataset, sampler, loader, generator, workers = classifier_loader(
        train_items, draw_weights, settings, size=int(plans["size"]), device=device, threads=threads
    )
    steps_per_epoch = max(1, len(loader))
    optimizer, scheduler = _optimiser(model, settings, steps_per_epoch)
    ema = weight_average(model, settings, steps_per_epoch)
    checkpoint_path = out / CHECKPOINT
    state = load_checkpoint(checkpoint_path, fingerprint) if settings["checkpoint"] else None
    precision, precision_info = _precision(
        state, settings, device, model, val_images, memory_format
    )
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    progress = FoldProgress.of(scheme.n_outputs, state, settings["keep"])
    resumable = {"model": model, "optimizer": optimizer, "scheduler": scheduler, "scaler": scaler}
    resumable.update({"ema": ema} if ema is not None else {})
    if state is not None:
        resume(state, resumable, checkpoint_path)
    # Wrapped after loading (the checkpoint holds the bare network's state_dict); DDP's
    # constructor sends rank 0's weights to every rank.
    trained = distributed.wrap(model, device)
    model = distributed.unwrap(trained)  # validated and saved without the ``module.`` prefix
    step = ClassifierStep(
        trained, loss_fn, optimizer, scheduler, scaler, device, precision, memory_format,
        scheme.kind == "multiclass", settings["clip_grad_norm"], ema,
    )  # fmt: skip
    validate = _validation(model, ema, (val_images, val_targets, scheme, device, precision))
    extra = {"precision": precision, "precision_info": precision_info}
    save = Checkpointer(checkpoint_path, fingerprint, resumable, extra, settings["checkpoint"])
    _run_epochs(progress, step, (dataset, sampler, loader, generator), validate, save, settings)
    distributed.check_replicas(trained)
    model.eval()
    if not distributed.is_main():
        return model, {}, []
    # Set in epoch 1 at the latest (score >= 0 > -1); the EMA's weights when averaging.
    model.load_state_dict(progress.best_state)
    summary = {
        **_fold_result(network, progress, val_targets, precision, precision_info),
        **calibrate_classifier(model, val_images, val_targets, scheme, task, device, precision),
        **_settings_used(settings, workers, initial),
        **_run_summary(progress),
    }
    return model, summary, progress.history


def _run_epochs(
    progress: FoldProgress,
    step: ClassifierStep,
    data: tuple[Any, Any, torch.utils.data.DataLoader, torch.Generator],
    validate: Callable[[bool], tuple[np.ndarray, float, float]],
    save: Checkpointer,
    settings: dict[str, Any],
) -> None:
    r"""The epochs of :func:`train_fold` from ``progress.start_epoch`` to ``train.epochs``, or
    until it stops early: every rank trains; rank 0 validates, keeps the best, decides
    whether to stop, writes the checkpoint (``save``) and tells the other ranks."""
    dataset, sampler, loader, generator = data
    seed, patience = int(settings["seed"]), settings["patience"]
    model = step.ema.module if step.ema is not None else distributed.unwrap(step.model)
    # Early stopping lands: the schedule anneals over these epochs before the run ends.
    landing = max(1, round(LANDING_SHARE * settings["epochs"])) * max(1, len(loader))
    for epoch in range(progress.start_epoch, settings["epochs"] + 1):
        if progress.stopped:
            break
        # Everything random in an epoch follows from (seed, epoch): a resumed run replays
        # the epochs it missed exactly. (Workers reseed from the generator, see MONAI's
        # worker_init_fn; without workers the transforms are reseeded here.) Each rank its
        # own augmentation draws (rank 0's are those of a single process).
        seed_epoch(seed, epoch, generator, dataset, sampler, offset=distributed.rank())
        record = train_epoch(step, loader, epoch)
        if not distributed.is_main():
            # Rank 0 validates and decides; the others wait for its decision.
            progress.stopped = distributed.broadcast(None)
            continue
        probs, record["val_loss"], record["val_auroc"], raw_auroc = validate(
            settings["channels_last"]
        )
        record = finish_record(record)
        record["val_auroc_raw"] = raw_auroc
        progress.add(record, model, probs)
        _log_epoch(record, settings["epochs"])
        if patience is not None and progress.bad_epochs >= patience and not step.scheduler.landing:
            log.info(
                "no better validation AUROC for %d epochs: annealing over %d more steps, then "
                "stopping",
                patience,
                landing,
            )
            step.scheduler.land(landing)
        # A time budget or a landing ends the run once the rate is at its floor.
        progress.stopped = step.scheduler.finished() and epoch < settings["epochs"]
        save(epoch, **progress.saved())
        if progress.stopped:
            log.info("stopped after epoch %d: the schedule reached its floor", epoch)
        distributed.broadcast(progress.stopped)


def _optimiser(
    model: torch.nn.Module, settings: dict[str, Any], steps_per_epoch: int
) -> tuple[torch.optim.Optimizer, AnnealingSchedule]:
    """AdamW and its per-step learning-rate schedule over ``train.epochs`` (and
    ``train.max_minutes``)."""
    optimizer = adamw(model.parameters(), settings["learning_rate"], settings["weight_decay"])
    total = settings["epochs"] * steps_per_epoch
    return optimizer, lr_schedule(optimizer, settings, total, steps_per_epoch)


def _validation(
    model: torch.nn.Module, ema: torch.nn.Module | None, data: tuple[Any, ...]
) -> Callable[[bool], tuple[np.ndarray, float, float, float]]:
    """Validation of an epoch on ``data`` (validation images, targets, scheme, device,
    precision): selection (and the kept weights) are the weight average's when there is
    one; the raw weights' AUROC goes into the history beside it (the epoch-to-epoch swing
    the average removes)."""
    images, targets, scheme, device, precision = data
    validate = partial(
        validate_classifier,
        val_images=images,
        val_targets=targets,
        scheme=scheme,
        device=device,
        precision=precision,
    )

    def of(network: torch.nn.Module) -> Callable[[bool], tuple[np.ndarray, float, float]]:
        return lambda channels_last: validate(network, channels_last=channels_last)

    raw = of(model) if ema is not None else None
    return partial(validate_both, of(ema.module if ema is not None else model), raw)


def _fold_result(
    network: dict[str, Any],
    progress: FoldProgress,
    val_targets: np.ndarray,
    precision: str,
    precision_info: dict[str, Any] | None,
) -> dict[str, Any]:
    """The summary's network, best epoch (its validation probabilities with the targets)
    and arithmetic precision."""
    return {
        "network": network,
        "best": progress.best,
        "best_probabilities": progress.best_probs,
        "val_targets": val_targets,
        "precision": precision,
        "precision_info": precision_info,
    }


def _settings_used(settings: dict[str, Any], workers: int, initial: Any) -> dict[str, Any]:
    """The summary's record of how the fold was trained: layout, loader workers, class
    balance and initial weights."""
    return {
        "channels_last": bool(settings["channels_last"]),
        "num_workers": workers,
        "balance": settings["balance"],
        "initial_weights": initial,
    }


def _run_summary(progress: FoldProgress) -> dict[str, Any]:
    """The summary's record of the run: early stop, epochs, resume and throughput."""
    return {
        "stopped_early": progress.stopped,
        "epochs_run": len(progress.history),
        "resumed_from_epoch": progress.resumed_from,
        **_throughput(progress.history),
    }


def _network(
    task: dict[str, Any], n_outputs: int, device: torch.device
) -> tuple[torch.nn.Module, dict[str, Any], Any, torch.memory_format]:
    """The task's network (one logit per label) with its initial weights when the task names
    some, on ``device`` in its memory layout; (the network, its description for the bundle,
    what the weights were, the layout)."""
    network = {
        "name": task["network"]["name"],
        "dims": 2,
        "in_channels": 1,
        "out_channels": n_outputs,
    }
    model = build_network(**network)
    initial = None
    if task["network"].get("weights"):
        initial = load_initial_weights(model, task["network"]["weights"])
    channels_last = task["train"]["channels_last"]
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    return model.to(device=device, memory_format=memory_format), network, initial, memory_format


def _loss_fn(
    kind: str, balance: str, loss_weights: np.ndarray, device: torch.device
) -> torch.nn.Module:
    """Cross-entropy (multi-class) or BCE with logits, weighted by ``loss_weights`` when
    ``train.balance`` is ``pos_weight``."""
    weight = torch.as_tensor(loss_weights, device=device) if balance == "pos_weight" else None
    if kind == "multiclass":
        return torch.nn.CrossEntropyLoss(weight=weight)
    return torch.nn.BCEWithLogitsLoss(pos_weight=weight)


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
