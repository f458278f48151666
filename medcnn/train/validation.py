"""Validation during training: the classifier's loss and mean AUROC, the segmenter's Dice
per class by sliding windows (both through :mod:`medcnn.inference`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from medcnn.data.labels import LabelScheme
from medcnn.inference.classification import predict_logits
from medcnn.inference.segmentation import image_probabilities
from medcnn.metrics.calibration import apply_calibration, fit_calibration
from medcnn.transforms.segmentation import IMAGE, LABEL, LoadArraysd


def load_item(item: Mapping[str, Any]) -> dict[str, Any]:
    return LoadArraysd()(item)


def dice_per_class(pred: np.ndarray, ref: np.ndarray, n_classes: int) -> list[float]:
    """Dice of each foreground class between two label maps (NaN where both are empty)."""
    out = []
    for c in range(1, n_classes):
        p, r = pred == c, ref == c
        denom = p.sum() + r.sum()
        out.append(float(2.0 * (p & r).sum() / denom) if denom else float("nan"))
    return out


def validate_segmenter(
    model: torch.nn.Module,
    items: Sequence[Mapping[str, Any]],
    plans: Mapping[str, Any],
    device: torch.device,
    precision: str,
    overlap: float,
) -> dict[str, Any]:
    """Mean foreground Dice over validation images (argmax of the sliding-window softmax; of
    the slice-by-slice one for 2D-on-volume plans).

    Returns:
        ``{"dice": mean over images of the mean over classes present, "dice_per_class":
        [mean over images per class]}``.
    """
    model.eval()
    n_classes = len(plans["classes"])
    per_image, per_class = [], []
    for item in items:
        loaded = load_item(item)
        prob = image_probabilities(model, loaded[IMAGE], plans, device, precision, overlap)
        pred = prob.argmax(0).numpy()
        dices = dice_per_class(pred, loaded[LABEL][0], n_classes)
        per_class.append(dices)
        finite = [d for d in dices if np.isfinite(d)]
        per_image.append(float(np.mean(finite)) if finite else 1.0)
    matrix = np.array(per_class, dtype=float)
    return {
        "dice": float(np.mean(per_image)) if per_image else float("nan"),
        "dice_per_class": [
            float(np.nanmean(matrix[:, k])) if np.isfinite(matrix[:, k]).any() else float("nan")
            for k in range(matrix.shape[1])
        ]
        if len(matrix)
        else [],
    }


def mean_auroc(targets: np.ndarray, probabilities: np.ndarray) -> float:
    """Mean over labels of the one-vs-rest AUROC (labels with one class are left out)."""
    from medcnn.metrics.classification import auroc

    values = [auroc(targets[:, k], probabilities[:, k]) for k in range(targets.shape[1])]
    finite = [v for v in values if np.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


def validate_classifier(
    model: torch.nn.Module,
    val_images: np.ndarray,
    val_targets: np.ndarray,
    scheme: LabelScheme,
    device: torch.device,
    precision: str,
    channels_last: bool,
) -> tuple[np.ndarray, float, float]:
    """(probabilities, loss, mean AUROC) of the validation images."""
    logits = predict_logits(model, val_images, device, precision, bool(channels_last))
    probs = scheme.probabilities(logits)
    if scheme.kind == "multiclass":
        val_loss = float(
            torch.nn.functional.cross_entropy(
                torch.as_tensor(logits), torch.as_tensor(val_targets.argmax(axis=1))
            )
        )
    else:
        val_loss = float(
            torch.nn.functional.binary_cross_entropy_with_logits(
                torch.as_tensor(logits), torch.as_tensor(val_targets)
            )
        )
    return probs, val_loss, mean_auroc(val_targets, probs)


def calibrate_classifier(
    model: torch.nn.Module,
    val_images: np.ndarray,
    val_targets: np.ndarray,
    scheme: LabelScheme,
    task: dict[str, Any],
    device: torch.device,
    precision: str,
) -> dict[str, Any]:
    """The calibration of the kept model, fitted on the validation images
    (``evaluation.calibration``), and the validation probabilities before and after it."""
    channels_last = bool(task["train"]["channels_last"])
    logits = predict_logits(model, val_images, device, precision, channels_last)
    method = task["evaluation"]["calibration"]
    calibration = fit_calibration(logits, val_targets, scheme.kind, method)
    return {
        "calibration": calibration,
        # kept in the bundle: an ensemble of folds fits one calibration on all of them
        "validation_logits": np.asarray(logits, dtype=np.float64).round(5).tolist(),
        "validation_targets": np.asarray(val_targets).tolist(),
        "uncalibrated_probabilities": scheme.probabilities(logits),
        "best_probabilities": scheme.probabilities(apply_calibration(logits, calibration)),
    }
