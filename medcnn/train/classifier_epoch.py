"""One epoch of the classification loop (:mod:`medcnn.train.classifier`) and the state a
resume restores, as in nnU-Net's and MONAI's trainers: the optimiser step, the pass over the
loader (summed over the ranks of a DDP job), the epoch's history row, and the loop's progress
(history, best epoch, early stopping), which goes into the checkpoint and comes back from it."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from medcnn.hardware import autocast
from medcnn.train import distributed
from medcnn.train.checkpoint import cpu_state
from medcnn.train.loaders import without_meta_tracking
from medcnn.train.weights import ExponentialAverage, clip_gradients
from medcnn.transforms.radiograph import KEY


@dataclass
class ClassifierStep:
    """What one optimiser step of the classifier uses: the network being trained (DDP-wrapped
    under torchrun), its loss, optimiser, per-step schedule and gradient scaler, and where and
    how it runs."""

    model: torch.nn.Module
    loss_fn: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler
    device: torch.device
    precision: str = "fp32"
    memory_format: torch.memory_format = torch.contiguous_format
    multiclass: bool = False
    #: largest gradient norm (None: no clipping)
    clip_grad_norm: float | None = None
    #: exponential moving average of the weights (:class:`medcnn.train.weights.ExponentialAverage`)
    ema: torch.nn.Module | None = None

    def __call__(self, batch: dict[str, torch.Tensor]) -> tuple[float, int]:
        """One step on a batch ``{"image": (B, 1, H, W), "label": (B, labels)}``; (its loss,
        the images in it)."""
        started = time.perf_counter()
        images = batch[KEY].to(self.device, non_blocking=True)
        images = images.contiguous(memory_format=self.memory_format)
        labels = batch["label"].float().to(self.device, non_blocking=True)
        self.optimizer.zero_grad(set_to_none=True)
        with autocast(self.device, self.precision):
            logits = self.model(images)
        # The loss in fp32: bf16 logits would round the small differences it is made of.
        logits = logits.float()
        if self.multiclass:
            loss = self.loss_fn(logits, labels.argmax(dim=1))
        else:
            loss = self.loss_fn(logits, labels)
        self.scaler.scale(loss).backward()
        if self.clip_grad_norm:
            # Unscaled first, so the norm is the true gradient's (fp16 loss scaling).
            self.scaler.unscale_(self.optimizer)
            clip_gradients(self.model.parameters(), self.clip_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.ema is not None:
            self.ema.update_parameters(distributed.unwrap(self.model))
        # The schedule counts steps and training seconds (a time budget anneals it too).
        self.scheduler.step(time.perf_counter() - started)
        return float(loss.detach()), len(images)


def weight_average(
    model: torch.nn.Module, settings: dict[str, Any], steps_per_epoch: int
) -> ExponentialAverage | None:
    """The exponential moving average of the weights (batch-norm statistics included) over
    about ``train.ema_epochs`` epochs of steps; None when that is null."""
    epochs = settings["ema_epochs"]
    if not epochs:
        return None
    decay = 1.0 - 1.0 / max(1.0, float(epochs) * steps_per_epoch)
    return ExponentialAverage(model, decay)


def validate_both(
    selected: Callable[[bool], tuple[np.ndarray, float, float]],
    raw: Callable[[bool], tuple[np.ndarray, float, float]] | None,
    channels_last: bool,
) -> tuple[np.ndarray, float, float, float]:
    """(probabilities, loss, AUROC) of the weights selection looks at, and the AUROC of the
    raw weights (the same when there is no average)."""
    probs, loss, auc = selected(channels_last)
    return probs, loss, auc, raw(channels_last)[2] if raw is not None else auc


def train_one_epoch(
    step: ClassifierStep, loader: torch.utils.data.DataLoader
) -> tuple[list[float], int, float]:
    """One pass over ``loader``, a ``step`` per batch (the model in training mode).

    Returns:
        (loss per step, images seen, seconds spent waiting for the loader).
    """
    step.model.train()
    losses: list[float] = []
    seen, wait = 0, 0.0
    waited = time.perf_counter()
    with without_meta_tracking():
        for batch in loader:
            wait += time.perf_counter() - waited
            loss, images = step(batch)
            losses.append(loss)
            seen += images
            waited = time.perf_counter()
    return losses, seen, wait


def _no_epoch() -> dict[str, Any]:
    """The scores before any epoch: every validated epoch is better."""
    return {"epoch": 0, "val_auroc": -1.0, "val_loss": float("inf")}


@dataclass
class FoldProgress:
    """The classifier loop's own state, which a resume restores with the resumable parts:
    the history, the best epoch so far (its weights and validation probabilities), the
    epochs without improvement and whether it stopped early."""

    best_probs: np.ndarray
    history: list[dict[str, float]] = field(default_factory=list)
    best: dict[str, Any] = field(default_factory=_no_epoch)
    best_state: dict[str, torch.Tensor] = field(default_factory=dict)
    bad_epochs: int = 0
    stopped: bool = False
    start_epoch: int = 1
    resumed_from: int | None = None
    #: ``train.keep``: ``best`` keeps the best validated epoch, ``last`` the last one.
    keep: str = "best"
    #: The best validated epoch's scores (early stopping counts from it); with
    #: ``keep: best`` the same as ``best``, the kept epoch.
    top: dict[str, Any] = field(default_factory=_no_epoch)

    @classmethod
    def of(cls, n_outputs: int, state: dict[str, Any] | None, keep: str = "best") -> FoldProgress:
        """A fresh start, or the progress saved in a checkpoint ``state``."""
        if state is None:
            return cls(best_probs=np.zeros((0, n_outputs)), keep=keep)
        return cls(
            best_probs=state["best_probs"].numpy(),
            history=state["history"],
            best=state["best"],
            best_state=state["best_state"],
            bad_epochs=state["bad_epochs"],
            stopped=bool(state.get("stopped")),
            start_epoch=state["epoch"] + 1,
            resumed_from=state["epoch"] + 1,
            keep=keep,
            top=state.get("top", state["best"]),
        )

    def add(self, record: dict[str, float], model: torch.nn.Module, probs: np.ndarray) -> None:
        """Record an epoch; the best is by validation AUROC, ties broken by the lower loss
        (an undefined AUROC, one class in validation, counts as 0 so a model is still
        kept). With ``keep: last`` every epoch replaces the kept weights, and the best
        validated epoch only decides early stopping."""
        self.history.append(record)
        val_auc, val_loss = record["val_auroc"], record["val_loss"]
        score = val_auc if np.isfinite(val_auc) else 0.0
        scores = {"epoch": record["epoch"], "val_auroc": score, "val_loss": val_loss}
        improved = (score, -val_loss) > (self.top["val_auroc"], -self.top["val_loss"])
        if improved:
            self.top = scores
            self.bad_epochs = 0
        else:
            self.bad_epochs += 1
        if improved or self.keep == "last":
            self.best = scores
            self.best_state = cpu_state(model)
            self.best_probs = probs

    def saved(self) -> dict[str, Any]:
        """The checkpoint's progress entries."""
        return {
            "history": self.history,
            "best": self.best,
            "top": self.top,
            "best_state": self.best_state,
            "best_probs": torch.as_tensor(self.best_probs),
            "bad_epochs": self.bad_epochs,
            "stopped": self.stopped,
        }


def train_epoch(
    step: ClassifierStep, loader: torch.utils.data.DataLoader, epoch: int
) -> dict[str, Any]:
    """Train one epoch on every rank; the start of its record (the loss averaged and the
    images summed over the ranks), with ``started``, its start on the clock."""
    start = time.perf_counter()
    losses, epoch_images, epoch_wait = train_one_epoch(step, loader)
    seconds = time.perf_counter() - start
    train_loss = distributed.all_reduce_mean(np.mean(losses) if losses else float("nan"))
    return {
        "epoch": epoch,
        "train_loss": train_loss,
        "lr": step.optimizer.param_groups[0]["lr"],
        "started": start,
        "train_seconds": seconds,
        "images": int(distributed.all_reduce_sum(epoch_images)),
        "data_wait_seconds": epoch_wait,
    }


def finish_record(partial: dict[str, Any]) -> dict[str, float]:
    """An epoch's history row, in the history's column order, from :func:`train_epoch`'s
    start and the validation's ``val_loss`` and ``val_auroc``; ``seconds`` ends now."""
    seconds, images = partial["train_seconds"], partial["images"]
    return {
        "epoch": partial["epoch"],
        "train_loss": partial["train_loss"],
        "val_loss": partial["val_loss"],
        "val_auroc": partial["val_auroc"],
        "lr": partial["lr"],
        "seconds": time.perf_counter() - partial["started"],
        "train_seconds": seconds,
        "images": images,
        "images_per_second": images / seconds if seconds else 0.0,
        "data_wait_seconds": partial["data_wait_seconds"],
    }
