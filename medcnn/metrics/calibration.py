"""Post-hoc calibration of a classifier's logits: Platt scaling or temperature scaling.

Fitted on the validation patients of a fold (never on the images it is judged on), stored
in the model bundle as a small dictionary and applied to every prediction:

* ``platt`` (binary and multi-label, each label alone): ``p = sigmoid(a * z + b)``. The slope
  undoes over-confidence and the offset the shift a class-weighted loss gives the logits
  (``pos_weight`` moves every logit by about ``log(pos_weight)``), which a temperature alone
  cannot. Platt's (1999) smoothed targets ``(N+ + 1) / (N+ + 2)`` and ``1 / (N- + 2)`` keep
  a small validation set from driving the slope to infinity.
* ``temperature`` (Guo et al. 2017): ``z / T``, one ``T`` for all outputs (multi-class:
  the softmax's; the only method for it); the ranking (AUROC) never changes.
* ``none``: the identity.

The fit minimises the log-loss with L-BFGS on ``log T`` (or ``a, b``), in float64.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

METHODS = ("platt", "temperature", "none")

#: The slope or inverse temperature is kept in this range: a near-zero slope would make
#: every probability the prevalence (a degenerate fit on a tiny validation set).
SLOPE_RANGE = (0.05, 20.0)


def identity() -> dict[str, Any]:
    """The calibration that changes nothing."""
    return {"method": "none"}


def _smoothed(targets: np.ndarray) -> np.ndarray:
    """Platt's targets: positives ``(N+ + 1)/(N+ + 2)``, negatives ``1/(N- + 2)``."""
    positives = float(targets.sum())
    negatives = float(len(targets) - positives)
    return np.where(targets > 0, (positives + 1) / (positives + 2), 1 / (negatives + 2))


def _fit(loss_of, params: torch.Tensor, steps: int = 200) -> torch.Tensor:
    params = params.clone().requires_grad_(True)
    optimizer = torch.optim.LBFGS([params], lr=0.5, max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = loss_of(params)
        loss.backward()
        return loss

    optimizer.step(closure)
    return params.detach()


def fit_platt(logits: np.ndarray, targets: np.ndarray) -> tuple[float, float]:
    """Slope and offset of Platt scaling for one label's logits ``(n,)`` and 0/1 targets."""
    z = torch.as_tensor(logits, dtype=torch.float64)
    y = torch.as_tensor(_smoothed(np.asarray(targets, dtype=float)), dtype=torch.float64)
    if len(np.unique(targets)) < 2:
        return 1.0, 0.0  # one class only: nothing to fit

    def loss_of(p: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.binary_cross_entropy_with_logits(p[0] * z + p[1], y)

    a, b = _fit(loss_of, torch.tensor([1.0, 0.0], dtype=torch.float64)).tolist()
    if not np.isfinite(a) or not np.isfinite(b):
        return 1.0, 0.0
    clipped = float(np.clip(a, *SLOPE_RANGE))
    if clipped != a:  # refit the offset alone at the bounded slope
        a = clipped

        def offset_loss(p: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.binary_cross_entropy_with_logits(a * z + p[0], y)

        b = float(_fit(offset_loss, torch.tensor([b], dtype=torch.float64))[0])
    return float(a), float(b)


def fit_temperature(logits: np.ndarray, targets: np.ndarray, kind: str) -> float:
    """The temperature ``T`` that minimises the validation log-loss.

    Args:
        logits: ``(n, outputs)``.
        targets: 0/1 ``(n, outputs)`` (multi-class: one-hot).
        kind: ``binary``, ``multilabel`` (sigmoid) or ``multiclass`` (softmax).
    """
    z = torch.as_tensor(logits, dtype=torch.float64)
    y = torch.as_tensor(targets, dtype=torch.float64)
    if len(z) == 0:
        return 1.0

    def loss_of(p: torch.Tensor) -> torch.Tensor:
        scaled = z / torch.exp(p[0])
        if kind == "multiclass":
            return torch.nn.functional.cross_entropy(scaled, y.argmax(dim=1))
        return torch.nn.functional.binary_cross_entropy_with_logits(scaled, y)

    log_t = float(_fit(loss_of, torch.zeros(1, dtype=torch.float64))[0])
    low, high = SLOPE_RANGE
    t = float(np.exp(log_t)) if np.isfinite(log_t) else 1.0
    return float(np.clip(t, 1.0 / high, 1.0 / low))


def fit_calibration(
    logits: np.ndarray, targets: np.ndarray, kind: str, method: str
) -> dict[str, Any]:
    """Fit ``method`` (:data:`METHODS`) on validation logits and targets ``(n, outputs)``.

    Multi-class tasks take a temperature whichever of ``platt``/``temperature`` is asked for
    (a per-class slope would change the argmax).

    Returns:
        ``{"method": "platt", "slope": [a per label], "offset": [b per label]}``,
        ``{"method": "temperature", "temperature": T}`` or ``{"method": "none"}``, with
        ``n`` the validation images it was fitted on.
    """
    if method not in METHODS:
        raise ValueError(f"unknown calibration method {method!r} (one of {METHODS})")
    if method == "none" or len(logits) == 0:
        return identity()
    if method == "temperature" or kind == "multiclass":
        return {
            "method": "temperature",
            "temperature": fit_temperature(logits, targets, kind),
            "n": len(logits),
        }
    fits = [fit_platt(logits[:, k], targets[:, k]) for k in range(logits.shape[1])]
    return {
        "method": "platt",
        "slope": [a for a, _ in fits],
        "offset": [b for _, b in fits],
        "n": len(logits),
    }


def apply_calibration(logits: np.ndarray, calibration: dict[str, Any] | None) -> np.ndarray:
    """Calibrated logits ``(n, outputs)`` (probabilities follow with the task's sigmoid or
    softmax as before); None or ``none`` returns them unchanged."""
    if not calibration or calibration.get("method", "none") == "none":
        return logits
    z = np.asarray(logits, dtype=np.float64)
    if calibration["method"] == "temperature":
        return (z / float(calibration["temperature"])).astype(np.float32)
    slope = np.asarray(calibration["slope"], dtype=np.float64)
    offset = np.asarray(calibration["offset"], dtype=np.float64)
    return (z * slope[None, :] + offset[None, :]).astype(np.float32)
