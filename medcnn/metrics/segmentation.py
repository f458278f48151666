"""Segmentation metrics: overlap, surface distance, lesion detection, volumes, nuclei instances.

Each metric is implemented once, here; training validation, prediction reports and the
benchmark all call these functions.

Semantic masks (``dice``, ``hd95``, ``lesion_detection``, ``volumes_ml``) are arrays of any
dimension in the same axis order as their ``spacing`` (mm per voxel along each axis, NIfTI
order ``(i, j, k)``); any nonzero voxel is foreground unless a function says otherwise.

Instance label images (``aji``, ``panoptic_quality``, ``f1_at``, ``morphology_table``) hold 0
for background and one arbitrary positive integer per object (usually 2D nuclei). Instance
metrics are computed from one contingency table of (predicted id, reference id) pixel counts
built with a single ``np.bincount``, so an image with 400 nuclei costs one pass over its pixels,
not one mask comparison per pair.

Empty-mask conventions (documented per function): when prediction and reference are both
empty, overlap and detection scores are 1.0 (perfect agreement on "nothing there") and the
surface distance is 0.0; a surface distance to an empty mask is ``inf``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import ndimage
from scipy.optimize import linear_sum_assignment

from medcnn.postprocess.components import connected_components

# ---------------------------------------------------------------------------------------------
# Semantic (binary) masks
# ---------------------------------------------------------------------------------------------


def _same_shape(pred: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred, ref = np.asarray(pred), np.asarray(ref)
    if pred.shape != ref.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from reference {ref.shape}")
    return pred, ref


def _spacing(spacing: Sequence[float] | None, ndim: int) -> np.ndarray:
    if spacing is None:
        return np.ones(ndim)
    values = np.asarray(spacing, dtype=np.float64)
    if values.shape != (ndim,) or not np.all(values > 0):
        raise ValueError(f"spacing {list(spacing)} must be {ndim} positive values (mm per voxel)")
    return values


def dice(pred: np.ndarray, ref: np.ndarray) -> float:
    """Dice similarity coefficient ``2|P∩R| / (|P|+|R|)`` of two binary masks (nonzero = in).

    Both masks empty is 1.0 (perfect agreement), so an image without a lesion that the model
    correctly leaves empty is not counted as a failure.

    Raises:
        ValueError: the shapes differ.
    """
    pred, ref = _same_shape(pred, ref)
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
    pred, ref = _same_shape(pred, ref)
    p, r = pred != 0, ref != 0
    if not p.any() or not r.any():
        raise ValueError("surface distances need two non-empty masks")
    sampling = _spacing(spacing, p.ndim)
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
    pred, ref = _same_shape(pred, ref)
    _spacing(spacing, pred.ndim)
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
    pred, ref = _same_shape(pred, ref)
    if not 0.0 <= min_overlap <= 1.0:
        raise ValueError(f"min_overlap {min_overlap} must be within 0..1")
    voxel_ml = (
        float(np.prod(_spacing(spacing, pred.ndim))) / 1000.0 if spacing is not None else None
    )
    pred_cc, n_pred = connected_components(pred, connectivity)
    ref_cc, n_ref = connected_components(ref, connectivity)
    table = _contingency(pred_cc.ravel(), ref_cc.ravel(), n_pred, n_ref)
    pred_size, ref_size = table.sum(axis=1), table.sum(axis=0)
    overlap = table[1:, 1:]

    def describe(size: int, covered: int, matches: np.ndarray, key: str, ok: bool) -> dict:
        row: dict[str, Any] = {"voxels": int(size)}
        if voxel_ml is not None:
            row["volume_ml"] = size * voxel_ml
        row["overlap_fraction"] = covered / size
        row[key] = ok
        row["matches"] = [int(m) + 1 for m in matches]
        return row

    lesions, predicted = [], []
    for b in range(n_ref):
        size, covered = int(ref_size[b + 1]), int(overlap[:, b].sum())
        ok = covered >= max(1.0, min_overlap * size)
        lesions.append(
            {"id": b + 1} | describe(size, covered, np.flatnonzero(overlap[:, b]), "detected", ok)
        )
    for a in range(n_pred):
        size, covered = int(pred_size[a + 1]), int(overlap[a, :].sum())
        ok = covered >= max(1.0, min_overlap * size)
        predicted.append(
            {"id": a + 1} | describe(size, covered, np.flatnonzero(overlap[a, :]), "confirmed", ok)
        )
    tp = sum(row["detected"] for row in lesions)
    tp_pred = sum(row["confirmed"] for row in predicted)
    sensitivity = tp / n_ref if n_ref else math.nan
    precision = tp_pred / n_pred if n_pred else math.nan
    if n_ref == 0 and n_pred == 0:
        f1 = 1.0
    elif n_ref == 0 or n_pred == 0 or sensitivity + precision == 0:
        f1 = 0.0
    else:
        f1 = 2 * sensitivity * precision / (sensitivity + precision)
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
    voxel_ml = float(np.prod(_spacing(spacing, label.ndim))) / 1000.0
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
    voxel_ml = float(np.prod(_spacing(spacing, mask.ndim))) / 1000.0
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


def _contingency(pred: np.ndarray, ref: np.ndarray, n_pred: int, n_ref: int) -> np.ndarray:
    """``(n_pred + 1, n_ref + 1)`` pixel counts of each (pred id, ref id) pair; ids sequential,
    0 = background (row/column 0)."""
    flat = pred.astype(np.int64) * (n_ref + 1) + ref.astype(np.int64)
    counts = np.bincount(flat, minlength=(n_pred + 1) * (n_ref + 1))
    return counts.reshape(n_pred + 1, n_ref + 1)


def _sequential(instances: np.ndarray) -> tuple[np.ndarray, int]:
    """Relabel an instance image to 0 (background) and 1..n, keeping the order of ids."""
    flat = np.asarray(instances).reshape(-1)
    if flat.size == 0:
        return flat.astype(np.int64), 0
    if not np.issubdtype(flat.dtype, np.integer) and not np.array_equal(flat, np.round(flat)):
        raise ValueError("instance label images must hold integer ids")
    low, high = flat.min(), flat.max()
    if low < 0:
        raise ValueError("instance label images must not hold negative ids")
    if high < 2**24:
        # A lookup table over the id range relabels in one pass (np.unique would sort).
        flat = flat.astype(np.int64)
        present = np.bincount(flat, minlength=1) > 0
        present[0] = False
        table = np.zeros(present.size, dtype=np.int64)
        table[present] = np.arange(1, int(present.sum()) + 1)
        return table[flat], int(present.sum())
    values, inverse = np.unique(flat, return_inverse=True)
    inverse = inverse.reshape(-1)
    if values[0] == 0:
        return inverse, int(values.size - 1)
    return inverse + 1, int(values.size)


@dataclass(frozen=True)
class InstanceOverlap:
    """Pixel overlap of every (predicted, reference) instance pair.

    Attributes:
        intersection: ``(n_pred, n_ref)`` pixels in both.
        pred_area: ``(n_pred,)`` pixels of each predicted instance.
        ref_area: ``(n_ref,)`` pixels of each reference instance.
    """

    intersection: np.ndarray
    pred_area: np.ndarray
    ref_area: np.ndarray

    @property
    def union(self) -> np.ndarray:
        """``(n_pred, n_ref)`` pixels in either."""
        return self.pred_area[:, None] + self.ref_area[None, :] - self.intersection

    @property
    def iou(self) -> np.ndarray:
        """``(n_pred, n_ref)`` intersection over union (0 where they do not touch)."""
        union = self.union
        return np.divide(self.intersection, union, out=np.zeros(union.shape), where=union > 0)


def instance_overlap(pred_inst: np.ndarray, ref_inst: np.ndarray) -> InstanceOverlap:
    """The overlap table of two instance label images (ids arbitrary, 0 background).

    Raises:
        ValueError: the shapes differ or an id is negative.
    """
    pred_inst, ref_inst = _same_shape(pred_inst, ref_inst)
    pred, n_pred = _sequential(pred_inst)
    ref, n_ref = _sequential(ref_inst)
    table = _contingency(pred, ref, n_pred, n_ref)
    return InstanceOverlap(
        intersection=table[1:, 1:],
        pred_area=table[1:, :].sum(axis=1),
        ref_area=table[:, 1:].sum(axis=0),
    )


def match_instances(
    pred_inst: np.ndarray, ref_inst: np.ndarray, iou: float = 0.5
) -> tuple[np.ndarray, np.ndarray, np.ndarray, InstanceOverlap]:
    """One-to-one matches of predicted and reference instances with IoU above ``iou``.

    With ``iou >= 0.5`` a match is unique by construction (two objects cannot both overlap a
    third by more than half its union), so thresholding is the matching, as in Kirillov et
    al. (2019). Below 0.5 the matching that maximises the summed IoU is taken (Hungarian).

    Returns:
        ``(pred_index, ref_index, matched_iou, overlap)``: 0-based positions of matched pairs
        in the sorted ids of each image, their IoUs, and the overlap table.

    Raises:
        ValueError: shapes differ, an id is negative, or ``iou`` is outside [0, 1).
    """
    overlap = instance_overlap(pred_inst, ref_inst)
    return (*_match(overlap, iou), overlap)


def _match(overlap: InstanceOverlap, iou: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if not 0.0 <= iou < 1.0:
        raise ValueError(f"IoU threshold {iou} must be within [0, 1)")
    scores = overlap.iou
    if iou >= 0.5:
        pred_index, ref_index = np.nonzero(scores > iou)
    else:
        rows, cols = linear_sum_assignment(scores, maximize=True)
        keep = scores[rows, cols] > iou
        pred_index, ref_index = rows[keep], cols[keep]
    return pred_index, ref_index, scores[pred_index, ref_index]


def panoptic_quality(
    pred_inst: np.ndarray, ref_inst: np.ndarray, iou: float = 0.5
) -> dict[str, float]:
    """Panoptic quality of an instance segmentation (Kirillov et al., CVPR 2019).

    ``SQ`` = mean IoU of the matched pairs, ``DQ`` = TP / (TP + FP/2 + FN/2), ``PQ`` = SQ·DQ,
    with matches at IoU > ``iou`` (unique for 0.5).

    Conventions: both images empty gives PQ = SQ = DQ = 1.0; no match at all gives SQ = 0.0
    (so PQ = 0.0), as HoVer-Net's ``get_fast_pq`` does.

    Returns:
        ``{"pq", "sq", "dq", "tp", "fp", "fn"}`` (counts as ints).

    Raises:
        ValueError: shapes differ, an id is negative, or ``iou`` is outside [0, 1).
    """
    return _panoptic_quality(instance_overlap(pred_inst, ref_inst), iou)


def _panoptic_quality(overlap: InstanceOverlap, iou: float) -> dict[str, float]:
    _, _, matched_iou = _match(overlap, iou)
    tp = int(matched_iou.size)
    fp = int(overlap.pred_area.size) - tp
    fn = int(overlap.ref_area.size) - tp
    if tp + fp + fn == 0:
        return {"pq": 1.0, "sq": 1.0, "dq": 1.0, "tp": 0, "fp": 0, "fn": 0}
    sq = float(matched_iou.sum() / tp) if tp else 0.0
    dq = tp / (tp + 0.5 * fp + 0.5 * fn)
    return {"pq": sq * dq, "sq": sq, "dq": dq, "tp": tp, "fp": fp, "fn": fn}


def f1_at(pred_inst: np.ndarray, ref_inst: np.ndarray, iou: float = 0.5) -> float:
    """Detection F1 = 2TP / (2TP + FP + FN) with the matching of :func:`panoptic_quality`.

    Equal to PQ's DQ. Both images empty is 1.0.

    Raises:
        ValueError: shapes differ, an id is negative, or ``iou`` is outside [0, 1).
    """
    return float(panoptic_quality(pred_inst, ref_inst, iou)["dq"])


def aji(pred_inst: np.ndarray, ref_inst: np.ndarray) -> float:
    """Aggregated Jaccard Index (Kumar et al., IEEE TMI 2017).

    Each reference instance ``G`` is paired with the predicted instance ``S`` of highest IoU
    among those that overlap it (first id on a tie); ``|G∩S|`` adds to the numerator and
    ``|G∪S|`` to the denominator. A reference instance that no prediction overlaps adds
    ``|G|`` to the denominator only. Finally every predicted instance paired with no reference
    instance adds its area to the denominator. As in the original definition (and
    HoVer-Net's ``get_fast_aji``), one prediction may be paired with several references.

    Both images empty is 1.0; otherwise the denominator is positive.

    Raises:
        ValueError: the shapes differ or an id is negative.
    """
    return _aji(instance_overlap(pred_inst, ref_inst))


def _aji(overlap: InstanceOverlap) -> float:
    n_pred, n_ref = overlap.intersection.shape
    if n_pred == 0 and n_ref == 0:
        return 1.0
    inter = overlap.intersection
    union = overlap.union
    intersection_sum, union_sum = 0, 0
    used = np.zeros(n_pred, dtype=bool)
    if n_pred:
        best = np.argmax(overlap.iou, axis=0)  # per reference instance
        cols = np.arange(n_ref)
        paired = inter[best, cols] > 0
        intersection_sum = int(inter[best[paired], cols[paired]].sum())
        union_sum = int(union[best[paired], cols[paired]].sum())
        union_sum += int(overlap.ref_area[~paired].sum())
        used[best[paired]] = True
    else:
        union_sum = int(overlap.ref_area.sum())
    union_sum += int(overlap.pred_area[~used].sum())
    return intersection_sum / union_sum


def instance_metrics(
    pred_inst: np.ndarray, ref_inst: np.ndarray, iou: float = 0.5
) -> dict[str, float]:
    """Dice (foreground), AJI, PQ/SQ/DQ, F1 and counts of one instance segmentation.

    Raises:
        ValueError: the shapes differ or an id is negative.
    """
    overlap = instance_overlap(pred_inst, ref_inst)
    quality = _panoptic_quality(overlap, iou)
    pred_total, ref_total = int(overlap.pred_area.sum()), int(overlap.ref_area.sum())
    both = pred_total + ref_total
    return {
        # Foreground Dice from the same table: every pixel of a pair is foreground in both.
        "dice": 2.0 * int(overlap.intersection.sum()) / both if both else 1.0,
        "aji": _aji(overlap),
        **quality,
        "f1": quality["dq"],
        "n_pred": quality["tp"] + quality["fp"],
        "n_ref": quality["tp"] + quality["fn"],
    }


# ---------------------------------------------------------------------------------------------
# Morphology
# ---------------------------------------------------------------------------------------------

_MORPHOLOGY_PROPERTIES = (
    "label",
    "area",
    "perimeter",
    "eccentricity",
    "intensity_mean",
    "centroid",
)


def morphology_table(
    instances: np.ndarray,
    intensity: np.ndarray,
    spacing: Sequence[float] | None = None,
) -> pd.DataFrame:
    """One row per instance: label, area, perimeter, eccentricity, mean intensity, centroid.

    Computed by ``skimage.measure.regionprops_table`` on a 2D instance image.

    Args:
        instances: ``(H, W)`` instance label image (0 background), any array axis order.
        intensity: ``(H, W)`` grey or ``(H, W, C)`` colour image on the same grid.
        spacing: mm per pixel along the two array axes; adds ``area_um2`` (and
            ``perimeter_um`` when the pixels are square; anisotropic pixels have no single
            perimeter scale, so it is left out).

    Returns:
        Columns ``label``, ``area_px``, ``perimeter_px``, ``eccentricity``, ``mean_intensity``
        (or ``mean_intensity_0..C-1`` for colour), ``centroid_0``, ``centroid_1`` (pixels,
        array axis order), then the µm columns when spacing is given. Sorted by label; an
        image without instances gives an empty table with these columns.

    Raises:
        ValueError: the image is not 2D, the grids differ, or the spacing does not fit.
    """
    from skimage.measure import regionprops_table

    instances = np.asarray(instances)
    intensity = np.asarray(intensity)
    if instances.ndim != 2:
        raise ValueError(f"morphology needs a 2D instance image, not shape {instances.shape}")
    if intensity.shape[:2] != instances.shape or intensity.ndim not in (2, 3):
        raise ValueError(
            f"intensity image {intensity.shape} does not match instances {instances.shape}"
        )
    if instances.min(initial=0) < 0:
        raise ValueError("instance label images must not hold negative ids")
    table = pd.DataFrame(
        regionprops_table(
            instances.astype(np.int64),
            intensity_image=intensity.astype(np.float64),
            properties=_MORPHOLOGY_PROPERTIES,
        )
    )
    names = {
        "area": "area_px",
        "perimeter": "perimeter_px",
        "centroid-0": "centroid_0",
        "centroid-1": "centroid_1",
        "intensity_mean": "mean_intensity",
    }
    names |= {f"intensity_mean-{c}": f"mean_intensity_{c}" for c in range(8)}
    table = table.rename(columns=names)
    if table.empty and intensity.ndim == 3:
        table = table.drop(columns=[c for c in table if c == "mean_intensity"])
        for c in range(intensity.shape[2]):
            table[f"mean_intensity_{c}"] = pd.Series(dtype=np.float64)
    table["label"] = table["label"].astype(np.int64)
    table["area_px"] = table["area_px"].astype(np.int64)
    if spacing is not None:
        mm = _spacing(spacing, 2)
        table["area_um2"] = table["area_px"] * float(np.prod(mm)) * 1e6
        if math.isclose(mm[0], mm[1], rel_tol=1e-6):
            table["perimeter_um"] = table["perimeter_px"] * float(mm[0]) * 1e3
    return table.sort_values("label").reset_index(drop=True)
