"""Metrics of semantic masks: overlap, surface distance, lesion detection, volumes.

Each metric is implemented once, here (instances: :mod:`medcnn.metrics.instances`); training
validation, prediction reports and the benchmark all call these functions.

Semantic masks (``dice``, ``hd95``, ``lesion_detection``, ``volumes_ml``) are arrays of any
dimension in the same axis order as their ``spacing`` (mm per voxel along each axis, NIfTI
order ``(i, j, k)``); any nonzero voxel is foreground unless a function says otherwise.

Empty-mask conventions (documented per function): when prediction and reference are both
empty, overlap and detection scores are 1.0 (perfect agreement on "nothing there") and the
surface distance is 0.0; a surface distance to an empty mask is ``inf``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import ndimage

from medcnn.metrics.arrays import contingency, same_shape, spacing_array
from medcnn.postprocess.components import connected_components

# ---------------------------------------------------------------------------------------------
# Semantic (binary) masks
# ---------------------------------------------------------------------------------------------


def dice(pred: np.ndarray, ref: np.ndarray) -> float:
    """Dice similarity coefficient ``2|P∩R| / (|P|+|R|)`` of two binary masks (nonzero = in).

    Both masks empty is 1.0 (perfect agreement), so an image without a lesion that the model
    correctly leaves empty is not counted as a failure.

    Raises:
        ValueError: the shapes differ.
    """
    pred, ref = same_shape(pred, ref)
    p, r = pred != 0, ref != 0
    total = int(p.sum()) + int(r.sum())
    if total == 0:
        return 1.0
    return 2.0 * int(np.logical_and(p, r).sum()) / total


def _surface(mask: np.ndarray) -> np.ndarray:
    """The voxels of ``mask`` with a face-neighbour outside it (the image edge counts as
    outside, so an object cut by the field of view has a surface there)."""
    structure = ndimage.generate_binary_structure(mask.ndim, 1)
    return mask & ~ndimage.binary_erosion(mask, structure=structure, border_value=0)


def surface_distances(
    pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Directed surface distances in mm: from each surface voxel of ``pred`` to the nearest
    surface voxel of ``ref``, and the reverse.

    Both masks must be non-empty (see :func:`hd95` for the empty cases).

    Raises:
        ValueError: shapes differ, a mask is empty, or the spacing does not fit.
    """
    pred, ref = same_shape(pred, ref)
    p, r = pred != 0, ref != 0
    if not p.any() or not r.any():
        raise ValueError("surface distances need two non-empty masks")
    sampling = spacing_array(spacing, p.ndim)
    sp, sr = _surface(p), _surface(r)
    # The Euclidean distance transform of the complement of a surface gives, at every voxel,
    # the distance in mm (sampling = spacing) to the nearest voxel of that surface.
    to_ref = ndimage.distance_transform_edt(~sr, sampling=sampling)
    to_pred = ndimage.distance_transform_edt(~sp, sampling=sampling)
    return to_ref[sp], to_pred[sr]


def hd95(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float] | None = None) -> float:
    """95th-percentile symmetric Hausdorff distance between two masks' surfaces, in mm.

    The larger of the two directed 95th percentiles (prediction→reference and
    reference→prediction), as MONAI's ``compute_hausdorff_distance(percentile=95)`` and
    DeepMind's ``surface-distance`` compute it. Surfaces are the voxels with a face-neighbour
    outside the mask; distances are between voxel centres, honouring anisotropic ``spacing``.

    Empty masks: both empty is 0.0; exactly one empty is ``inf`` (there is no surface to
    measure to). Aggregate with a median or count the infinite cases; ``json.dumps`` writes
    ``Infinity``, so store ``None`` in strict JSON.

    Args:
        pred, ref: binary masks (nonzero = in), same shape.
        spacing: mm per voxel along each array axis; None is 1.0 each.

    Raises:
        ValueError: the shapes differ or the spacing does not fit the masks.
    """
    pred, ref = same_shape(pred, ref)
    spacing_array(spacing, pred.ndim)
    p_any, r_any = bool(np.any(pred)), bool(np.any(ref))
    if not p_any and not r_any:
        return 0.0
    if not p_any or not r_any:
        return math.inf
    forward, backward = surface_distances(pred, ref, spacing)
    return float(max(np.percentile(forward, 95), np.percentile(backward, 95)))


def lesion_detection(
    pred: np.ndarray,
    ref: np.ndarray,
    spacing: Sequence[float] | None = None,
    min_overlap: float = 0.0,
    connectivity: int | None = None,
) -> dict[str, Any]:
    """Lesion-wise detection over connected components of two binary masks.

    A reference lesion is *detected* (a true positive) when predicted foreground covers at
    least ``min_overlap`` of its voxels, and at least one voxel. A predicted component is a
    *false positive* when the reference covers less than ``min_overlap`` of it (or none of
    it). Counting each side on its own components keeps one large prediction spanning two
    lesions from being a false positive, and two predicted pieces of one lesion from being
    two true positives.

    Args:
        pred, ref: binary masks (nonzero = lesion), same shape.
        spacing: mm per voxel (for lesion volumes); None leaves volumes out.
        min_overlap: fraction 0..1 of a component that must be covered by the other mask.
        connectivity: neighbourhood rank for components (1 = faces; None = full, 26 in 3D).

    Returns:
        ``tp`` (reference lesions detected), ``fn`` (reference lesions missed), ``fp``
        (predicted components not confirmed), ``tp_pred`` (predicted components confirmed),
        ``n_ref``, ``n_pred``, ``sensitivity`` = tp/n_ref (NaN without reference lesions),
        ``precision`` = tp_pred/n_pred (NaN without predicted lesions), ``f1`` = harmonic mean
        of the two (1.0 when both masks are empty, 0.0 when exactly one is), and ``lesions``
        and ``predicted``: one dict per component (``id``, ``voxels``, ``volume_ml`` when
        spacing is given, ``overlap_fraction``, ``detected``/``confirmed``, ``matches``: the ids
        of the overlapping components on the other side).

    Raises:
        ValueError: shapes differ, spacing does not fit, or ``min_overlap`` is outside 0..1.
    """
    pred, ref = same_shape(pred, ref)
    if not 0.0 <= min_overlap <= 1.0:
        raise ValueError(f"min_overlap {min_overlap} must be within 0..1")
    voxel_ml = (
        float(np.prod(spacing_array(spacing, pred.ndim))) / 1000.0 if spacing is not None else None
    )
    pred_cc, n_pred = connected_components(pred, connectivity)
    ref_cc, n_ref = connected_components(ref, connectivity)
    table = contingency(pred_cc.ravel(), ref_cc.ravel(), n_pred, n_ref)
    pred_size, ref_size = table.sum(axis=1), table.sum(axis=0)
    overlap = table[1:, 1:]

    lesions = _component_rows(ref_size, overlap.T, "detected", min_overlap, voxel_ml)
    predicted = _component_rows(pred_size, overlap, "confirmed", min_overlap, voxel_ml)
    tp = sum(row["detected"] for row in lesions)
    tp_pred = sum(row["confirmed"] for row in predicted)
    sensitivity = tp / n_ref if n_ref else math.nan
    precision = tp_pred / n_pred if n_pred else math.nan
    f1 = _detection_f1(sensitivity, precision, n_ref, n_pred)
    return {
        "tp": tp,
        "fp": n_pred - tp_pred,
        "fn": n_ref - tp,
        "tp_pred": tp_pred,
        "n_ref": n_ref,
        "n_pred": n_pred,
        "sensitivity": sensitivity,
        "precision": precision,
        "f1": f1,
        "lesions": lesions,
        "predicted": predicted,
    }


def _component_rows(
    sizes: np.ndarray, overlap: np.ndarray, key: str, min_overlap: float, voxel_ml: float | None
) -> list[dict[str, Any]]:
    """One row per connected component of one side of :func:`lesion_detection`.

    Args:
        sizes: voxels per component label of this side (index 0: background).
        overlap: ``(this side's components, the other side's)`` voxels in common.
        key: the flag's name, ``detected`` (reference) or ``confirmed`` (prediction).
        min_overlap: the covered fraction that sets the flag (and at least one voxel).
        voxel_ml: millilitres per voxel; None leaves ``volume_ml`` out.
    """
    rows = []
    for c in range(overlap.shape[0]):
        size, covered = int(sizes[c + 1]), int(overlap[c, :].sum())
        row: dict[str, Any] = {"id": c + 1, "voxels": size}
        if voxel_ml is not None:
            row["volume_ml"] = size * voxel_ml
        row["overlap_fraction"] = covered / size
        row[key] = covered >= max(1.0, min_overlap * size)
        row["matches"] = [int(m) + 1 for m in np.flatnonzero(overlap[c, :])]
        rows.append(row)
    return rows


def _detection_f1(sensitivity: float, precision: float, n_ref: int, n_pred: int) -> float:
    """Harmonic mean of lesion sensitivity and precision: 1.0 when both masks are empty, 0.0
    when exactly one is."""
    if n_ref == 0 and n_pred == 0:
        return 1.0
    if n_ref == 0 or n_pred == 0 or sensitivity + precision == 0:
        return 0.0
    return 2 * sensitivity * precision / (sensitivity + precision)


def volumes_ml(label: np.ndarray, spacing: Sequence[float]) -> dict[int, float]:
    """Volume of every nonzero label value in mL (1 mL = 1000 mm³).

    Args:
        label: integer label map.
        spacing: mm per voxel along each array axis.

    Returns:
        ``{label value: mL}`` for each value present other than 0 (an empty map gives ``{}``).

    Raises:
        ValueError: the spacing does not fit the label map, or labels are negative.
    """
    label = np.asarray(label)
    voxel_ml = float(np.prod(spacing_array(spacing, label.ndim))) / 1000.0
    values, counts = np.unique(label, return_counts=True)
    if values.size and values[0] < 0:
        raise ValueError("label maps must not hold negative values")
    return {int(v): int(c) * voxel_ml for v, c in zip(values, counts, strict=True) if v != 0}


def component_volumes(
    mask: np.ndarray,
    spacing: Sequence[float],
    affine: np.ndarray | None = None,
    connectivity: int | None = None,
) -> list[dict[str, Any]]:
    """Connected components of a binary mask, largest first, with volume and centroid.

    Args:
        mask: binary mask (nonzero = in), NIfTI axis order when ``affine`` is given.
        spacing: mm per voxel along each array axis.
        affine: 4x4 voxel-to-world (RAS+, mm) matrix of a 3D mask; adds ``centroid_mm``.
        connectivity: neighbourhood rank (1 = faces; None = full, 26 in 3D).

    Returns:
        One dict per component: ``id`` (1 = largest), ``voxels``, ``volume_ml``,
        ``centroid_voxel`` (array index order) and, with an affine, ``centroid_mm``.

    Raises:
        ValueError: the spacing does not fit, or the affine is not 4x4 for a 3D mask.
    """
    mask = np.asarray(mask)
    voxel_ml = float(np.prod(spacing_array(spacing, mask.ndim))) / 1000.0
    if affine is not None and (np.shape(affine) != (4, 4) or mask.ndim != 3):
        raise ValueError("a centroid in mm needs a 3D mask and a 4x4 affine")
    labels, n = connected_components(mask, connectivity)
    if n == 0:
        return []
    sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    centroids = ndimage.center_of_mass(np.ones(mask.shape), labels, np.arange(1, n + 1))
    order = np.argsort(-sizes, kind="stable")
    rows = []
    for rank, index in enumerate(order, start=1):
        centroid = np.asarray(centroids[index], dtype=np.float64)
        row: dict[str, Any] = {
            "id": rank,
            "voxels": int(sizes[index]),
            "volume_ml": int(sizes[index]) * voxel_ml,
            "centroid_voxel": [float(c) for c in centroid],
        }
        if affine is not None:
            world = np.asarray(affine, dtype=np.float64) @ np.append(centroid, 1.0)
            row["centroid_mm"] = [float(c) for c in world[:3]]
        rows.append(row)
    return rows


# ---------------------------------------------------------------------------------------------
# Instance label images (nuclei)
# ---------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------
# Morphology
# ---------------------------------------------------------------------------------------------
