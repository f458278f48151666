"""Checks and tables the segmentation and instance metrics share."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def same_shape(pred: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred, ref = np.asarray(pred), np.asarray(ref)
    if pred.shape != ref.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from reference {ref.shape}")
    return pred, ref


def spacing_array(spacing: Sequence[float] | None, ndim: int) -> np.ndarray:
    if spacing is None:
        return np.ones(ndim)
    values = np.asarray(spacing, dtype=np.float64)
    if values.shape != (ndim,) or not np.all(values > 0):
        raise ValueError(f"spacing {list(spacing)} must be {ndim} positive values (mm per voxel)")
    return values


def contingency(pred: np.ndarray, ref: np.ndarray, n_pred: int, n_ref: int) -> np.ndarray:
    """``(n_pred + 1, n_ref + 1)`` pixel counts of each (pred id, ref id) pair; ids sequential,
    0 = background (row/column 0)."""
    flat = pred.astype(np.int64) * (n_ref + 1) + ref.astype(np.int64)
    counts = np.bincount(flat, minlength=(n_pred + 1) * (n_ref + 1))
    return counts.reshape(n_pred + 1, n_ref + 1)
