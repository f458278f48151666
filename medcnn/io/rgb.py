"""Colour voxels in the two NIfTI layouts: RGB24 (dcm2niix's, NIfTI datatype 128) and the
vector layout ``(i, j, k, t, 3)`` (intent ``vector``) that medcnn's readers work on."""

from __future__ import annotations

import numpy as np

#: nibabel's dtype of NIfTI RGB24 voxels.
RGB24 = np.dtype([("R", "u1"), ("G", "u1"), ("B", "u1")])


def to_rgb24(data: np.ndarray) -> np.ndarray:
    """``(i, j, k, t, 3)`` uint8 -> RGB24 ``(i, j, k)`` (one volume) or ``(i, j, k, t)``."""
    values = np.ascontiguousarray(np.asarray(data, dtype=np.uint8))
    if values.ndim != 5 or values.shape[-1] != 3:
        raise ValueError(f"expected (i, j, k, t, 3) colour voxels, got {values.shape}")
    if values.shape[3] == 1:
        values = values[:, :, :, 0, :]
    out = np.empty(values.shape[:-1], dtype=RGB24)
    for index, name in enumerate(RGB24.names):
        out[name] = values[..., index]
    return out


def as_vector(data: np.ndarray) -> np.ndarray:
    """RGB24 (or any structured colour) voxels -> ``(i, j, k, t, 3)``; other arrays as
    they are, so a reader can call it on whatever nibabel returns."""
    if data.dtype.names is None:
        return data
    values = np.stack([data[name] for name in data.dtype.names[:3]], axis=-1)
    while values.ndim < 5:
        values = values[..., None, :] if values.ndim == 4 else values[:, :, None]
    return values
