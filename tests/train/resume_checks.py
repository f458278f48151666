"""The check both resume tests make: a run killed and resumed ends where the uninterrupted
reference run ended (same best epoch, validation figures and weights)."""

from __future__ import annotations

import json
from pathlib import Path

import torch


def assert_resumed_like_reference(fold: Path, ref_fold: Path, saved: int) -> None:
    ref_metrics = json.loads((ref_fold / "metrics.json").read_text())
    metrics = json.loads((fold / "metrics.json").read_text())
    assert metrics["resumed_from_epoch"] == saved + 1
    assert metrics["best_epoch"] == ref_metrics["best_epoch"]
    for key in ("val_auroc", "val_loss", "threshold"):
        assert abs(metrics[key] - ref_metrics[key]) < 1e-5, key
    ref_weights = torch.load(ref_fold / "model.pt", weights_only=True)
    weights = torch.load(fold / "model.pt", weights_only=True)
    for name, tensor in ref_weights.items():
        torch.testing.assert_close(weights[name], tensor, atol=1e-5, rtol=1e-4, msg=name)
