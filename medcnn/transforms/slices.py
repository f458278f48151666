"""2D networks on 3D volumes ("2D-on-volume"): slices along one axis of the canonical grid.

A segmentation task with ``segmentation.slices.enabled`` keeps its 3D plans (the volume's
target spacing, preprocessing, the ingest grid its masks go back to) and trains a 2D network
on the volume's slices along one axis of the canonical RAS+ grid
(:func:`~medcnn.transforms.spatial.canonical_orientation`): ``sagittal`` slices are
perpendicular to the first axis (left-right), ``coronal`` to the second (posterior-anterior),
``axial`` to the third (inferior-superior). With ``context`` k, each slice's input also holds
the k slices on either side as extra channels ("2.5D"), channel-major: input channel
``c * (2k + 1) + j`` is image channel ``c`` at offset ``j - k`` along the slice axis (edge
slices repeat at the volume's ends).

The plans say it in ``plans["slices"]`` (``axis``, ``axis_index``, ``context``,
``foreground_fraction``); ``plans["patch_size"]`` is then the 2D in-plane patch and
``plans["network"]`` a 2D network with ``n_channels * (2k + 1)`` inputs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

#: The canonical (RAS+) axis each slice orientation is perpendicular to.
SLICE_AXES = {"sagittal": 0, "coronal": 1, "axial": 2}


def slice_settings(plans: Mapping[str, Any]) -> dict[str, Any] | None:
    """The plans' ``slices`` (a 2D network on a 3D task's slices), or None (the network has
    the data's dimensions)."""
    slices = plans.get("slices")
    return dict(slices) if slices else None


def in_plane(values: Sequence[Any], axis: int) -> list[Any]:
    """``values`` (one per canonical axis) without the slice axis: the slice's own two."""
    return [v for a, v in enumerate(values) if a != axis]


def slice_view(plans: Mapping[str, Any]) -> dict[str, Any]:
    """The plans as a 2D task of the slices sees them (what the 2D training transforms read:
    ``dims`` 2, the in-plane ``target_spacing``, the network's input channels)."""
    slices = slice_settings(plans)
    if slices is None:
        return dict(plans)
    axis = int(slices["axis_index"])
    return {
        **plans,
        "dims": 2,
        "target_spacing": in_plane(plans["target_spacing"], axis),
        "n_channels": int(plans["network"]["in_channels"]),
    }


def slice_stack(
    image: np.ndarray, axis: int, context: int = 0, index: Sequence[int] | None = None
) -> np.ndarray:
    """The network inputs of a volume's slices.

    Args:
        image: ``(C, X, Y, Z)`` preprocessed (canonical order).
        axis: the spatial axis (0, 1, 2) the slices are perpendicular to.
        context: neighbouring slices on either side, as extra channels.
        index: which slices (default: all, in order).

    Returns:
        float32 ``(S, C * (2 * context + 1), H, W)``, ``(H, W)`` the two other axes in order.
    """
    vol = np.moveaxis(np.asarray(image, dtype=np.float32), axis + 1, 1)  # (C, S, H, W)
    n = vol.shape[1]
    picked = np.arange(n) if index is None else np.asarray(index, dtype=int)
    k = int(context)
    if k == 0:
        return np.ascontiguousarray(vol[:, picked].transpose(1, 0, 2, 3))
    offsets = np.clip(picked[:, None] + np.arange(-k, k + 1)[None, :], 0, n - 1)  # (S, 2k+1)
    stacked = vol[:, offsets]  # (C, S, 2k+1, H, W)
    s, h, w = len(picked), vol.shape[2], vol.shape[3]
    return np.ascontiguousarray(stacked.transpose(1, 0, 2, 3, 4).reshape(s, -1, h, w))


def unstack_slices(prob: np.ndarray, axis: int) -> np.ndarray:
    """The inverse of :func:`slice_stack`'s geometry for per-slice outputs: ``(S, K, H, W)``
    (all slices, in order) to ``(K, X, Y, Z)``."""
    return np.moveaxis(np.asarray(prob).transpose(1, 0, 2, 3), 1, axis + 1)


def foreground_slices(label: np.ndarray, axis: int) -> np.ndarray:
    """Which slices of a ``(1, X, Y, Z)`` label map hold foreground (bool per slice)."""
    return np.asarray(label[0] > 0).any(axis=tuple(a for a in range(3) if a != axis))


def slice_weights(has_foreground: np.ndarray, foreground_fraction: float) -> np.ndarray:
    """Draw weights (summing to 1) of slices, so that a share ``foreground_fraction`` of the
    draws is a slice with foreground and the rest one without (uniformly within each group;
    uniform over all when either group is empty)."""
    fg = np.asarray(has_foreground, dtype=bool)
    n_fg, n_bg = int(fg.sum()), int((~fg).sum())
    if n_fg == 0 or n_bg == 0:
        return np.full(fg.size, 1.0 / max(fg.size, 1))
    f = float(foreground_fraction)
    return np.where(fg, f / n_fg, (1.0 - f) / n_bg)
