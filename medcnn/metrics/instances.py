"""Metrics of instance label images (usually 2D nuclei): AJI, panoptic quality, F1, morphology.

Instance label images hold 0 for background and one arbitrary positive integer per object.
Instance metrics are computed from one contingency table of (predicted id, reference id) pixel
counts built with a single ``np.bincount``, so an image with 400 nuclei costs one pass over its
pixels, not one mask comparison per pair. When prediction and reference are both empty, the
scores are 1.0 (perfect agreement on "nothing there").
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment

from medcnn.metrics.arrays import contingency, same_shape, spacing_array


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
    pred_inst, ref_inst = same_shape(pred_inst, ref_inst)
    pred, n_pred = _sequential(pred_inst)
    ref, n_ref = _sequential(ref_inst)
    table = contingency(pred, ref, n_pred, n_ref)
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
        mm = spacing_array(spacing, 2)
        table["area_um2"] = table["area_px"] * float(np.prod(mm)) * 1e6
        if math.isclose(mm[0], mm[1], rel_tol=1e-6):
            table["perimeter_um"] = table["perimeter_px"] * float(mm[0]) * 1e3
    return table.sort_values("label").reset_index(drop=True)
