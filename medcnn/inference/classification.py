"""Classifier inference: logits of a stack of images, test-time views, the fold ensemble.

The one place a trained classifier is run forward: validation during training, prediction and
the saliency stage all call these, so they see the same numbers.
"""

from __future__ import annotations

import copy
import functools
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from medcnn.data.labels import LabelScheme
from medcnn.hardware import autocast
from medcnn.metrics.calibration import apply_calibration


@torch.no_grad()
def predict_logits(
    model: torch.nn.Module,
    images: np.ndarray,
    device: torch.device,
    precision: str = "fp32",
    channels_last: bool = False,
    batch_size: int = 32,
) -> np.ndarray:
    """Logits for a stack of images.

    Args:
        model: the network (put in ``eval()`` mode here).
        images: float32 ``(n, 1, H, W)``.
        device: where to run.
        precision: ``fp32``, ``bf16`` or ``fp16`` autocast.
        channels_last: feed NHWC tensors (match the model's memory format).
        batch_size: images per forward pass.

    Returns:
        float32 ``(n, outputs)``.
    """
    model.eval()
    out = []
    for start in range(0, len(images), batch_size):
        batch = torch.as_tensor(images[start : start + batch_size], device=device)
        if channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        with autocast(device, precision):
            logits = model(batch)
        out.append(logits.float().cpu().numpy())
    if not out:
        return np.zeros((0, 1), dtype=np.float32)
    return np.concatenate(out).astype(np.float32)


#: Test-time views as (scale, shift along i, shift along j), shifts in fractions of the side:
#: the range of the training augmentation, fixed so a prediction is reproducible.
TTA_VIEWS = (
    (1.0, 0.0, 0.0),
    (1.05, 0.0, 0.0),
    (0.95, 0.0, 0.0),
    (1.0, 0.03, 0.0),
    (1.0, 0.0, 0.03),
)


def tta_views(images: np.ndarray, flip: bool = False) -> list[np.ndarray]:
    """The fixed test-time views of a stack ``(n, 1, H, W)``: :data:`TTA_VIEWS`, plus each
    flipped along i when the model was trained with flips.

    Returns:
        float32 arrays of the input's shape, the unchanged stack first.
    """
    x = torch.as_tensor(images, dtype=torch.float32)
    views = []
    for scale, di, dj in TTA_VIEWS:
        # affine_grid maps output to input coordinates, in -1..1 with the last axis first.
        theta = torch.tensor([[1 / scale, 0.0, -2 * dj], [0.0, 1 / scale, -2 * di]])
        grid = F.affine_grid(theta.expand(len(x), 2, 3), list(x.shape), align_corners=False)
        views.append(
            F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        )
    if flip:
        views += [torch.flip(v, dims=[2]) for v in views]
    views[0] = x  # exactly the input, not a resampled copy of it
    return [v.numpy() for v in views]


def ensemble_calibration(
    bundles: list[tuple[torch.nn.Module, dict[str, Any]]], kind: str
) -> dict[str, Any] | None:
    """One calibration for a cross-validated ensemble (``split.folds`` > 1), fitted on the
    logits of every fold's model on its own validation patients (kept in its bundle): each
    patient of the training cohort once, by a model that never trained on them.

    Each fold's own calibration is fitted on a fold's worth of patients and the slopes scatter
    (on the NIH benchmark, four folds of about 36 patients each); averaging probabilities
    that went through different slopes lets the steepest fold outvote the others, which
    lost 0.04 pooled AUROC there (0.826 uncalibrated, 0.783 with each fold's own Platt
    scaling). One calibration, applied to every fold's logits, keeps the folds equal.

    Returns:
        The calibration (``evaluation.calibration``'s method, the first bundle's), or None
        for a single model or when a bundle predates stored validation logits (each bundle's
        own calibration is then used).
    """
    pooled = _pooled_validation(bundles)
    if len(bundles) < 2 or pooled is None:
        return None
    method = str((bundles[0][1].get("calibration") or {}).get("method", "none"))
    logits, targets = pooled
    fitted = _fitted_calibration(
        logits.tobytes(), logits.shape, targets.tobytes(), targets.shape, kind, method
    )
    return copy.deepcopy(fitted)


@functools.lru_cache(maxsize=8)
def _fitted_calibration(
    logits: bytes, logits_shape: tuple, targets: bytes, targets_shape: tuple, kind: str, method: str
) -> dict[str, Any]:
    """:func:`~medcnn.metrics.calibration.fit_calibration` on pooled validation logits, kept:
    the predict and saliency stages ask for the same ensemble's calibration for every
    subject (and for its thresholds), and the fit is the same each time."""
    from medcnn.metrics.calibration import fit_calibration

    return fit_calibration(
        np.frombuffer(logits, dtype=np.float64).reshape(logits_shape).copy(),
        np.frombuffer(targets, dtype=np.float64).reshape(targets_shape).copy(),
        kind,
        method,
    )


def _pooled_validation(
    bundles: list[tuple[torch.nn.Module, dict[str, Any]]],
) -> tuple[np.ndarray, np.ndarray] | None:
    """Every bundle's stored validation logits and targets, concatenated (None when a bundle
    has none)."""
    stored = [b.get("validation") for _, b in bundles]
    if any(not v or not v.get("logits") for v in stored):
        return None
    logits = np.concatenate([np.asarray(v["logits"], dtype=np.float64) for v in stored])
    targets = np.concatenate([np.asarray(v["targets"], dtype=np.float64) for v in stored])
    return logits, targets


def ensemble_thresholds(
    bundles: list[tuple[torch.nn.Module, dict[str, Any]]],
    scheme: LabelScheme,
    calibration: dict[str, Any],
    evaluation: dict[str, Any],
) -> list[float]:
    """Each label's decision threshold for an ensemble under :func:`ensemble_calibration`:
    chosen (``evaluation.threshold``, as the train stage chooses a fold's) on the calibrated
    validation probabilities of all folds together."""
    from medcnn.metrics.classification import choose_threshold

    pooled = _pooled_validation(bundles)
    if pooled is None:
        raise ValueError("ensemble thresholds need every bundle's stored validation logits")
    logits, targets = pooled
    probs = scheme.probabilities(apply_calibration(logits, calibration))
    return [
        float(
            choose_threshold(
                targets[:, k], probs[:, k], evaluation["threshold"], evaluation["sensitivity"]
            )
        )
        for k in range(probs.shape[1])
    ]


def decision_thresholds(
    bundles: list[tuple[torch.nn.Module, dict[str, Any]]],
    scheme: LabelScheme,
    evaluation: dict[str, Any],
) -> list[float]:
    """Each label's decision threshold for the models predicting together: for an ensemble
    with one calibration (:func:`ensemble_calibration`), chosen on all folds' calibrated
    validation probabilities; otherwise each bundle's own thresholds, averaged."""
    common = ensemble_calibration(bundles, scheme.kind)
    if common is not None:
        return ensemble_thresholds(bundles, scheme, common, evaluation)
    n = len(scheme.labels)
    return np.mean([b.get("thresholds", [b["threshold"]] * n) for _, b in bundles], axis=0).tolist()


def ensemble_probabilities(
    bundles: list[tuple[torch.nn.Module, dict[str, Any]]],
    images: np.ndarray,
    scheme: LabelScheme,
    device: torch.device,
    tta: bool = False,
    calibrate: bool = True,
    precision: str = "fp32",
) -> np.ndarray:
    """Probabilities of every fold model, each averaged over its test-time views.

    Each fold's logits go through the calibration (:mod:`medcnn.metrics.calibration`) before
    the sigmoid or softmax: for an ensemble, the one :func:`ensemble_calibration` fits on all
    folds' validation patients; for one model (or bundles without stored validation logits)
    its own (``bundle["calibration"]``); bundles from before calibration have none and are
    used as they are.

    Args:
        bundles: (model, bundle description) per fold.
        images: float32 ``(n, 1, H, W)``.
        scheme: the task's label scheme (softmax or sigmoid).
        device: where to run.
        tta: average over :func:`tta_views`.
        calibrate: apply each bundle's calibration (False: the network's raw probabilities).
        precision: autocast of the forward passes.

    Returns:
        float ``(folds, n, labels)``.
    """
    common = ensemble_calibration(bundles, scheme.kind) if calibrate else None
    out = []
    for model, bundle in bundles:
        model.to(device)
        views = tta_views(images, bundle.get("flip", False)) if tta else [images]
        calibration = (common or bundle.get("calibration")) if calibrate else None
        probs = [
            scheme.probabilities(
                apply_calibration(predict_logits(model, v, device, precision), calibration)
            )
            for v in views
        ]
        out.append(np.mean(probs, axis=0))
    return np.stack(out)
