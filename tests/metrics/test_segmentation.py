from __future__ import annotations

import math

import numpy as np
import pytest

from medcnn.metrics.instances import (
    aji,
    f1_at,
    instance_metrics,
    morphology_table,
    panoptic_quality,
)
from medcnn.metrics.segmentation import component_volumes, dice, hd95, lesion_detection, volumes_ml


def two_ref_three_pred() -> tuple[np.ndarray, np.ndarray]:
    """Reference R1 (id 10, 6 px), R2 (id 20, 4 px); predictions P1 (id 7, 5 px inside R1),
    P2 (id 3, 4 px, half over R2), P3 (id 9, 3 px, over nothing). Ids are arbitrary."""
    ref = np.zeros((3, 10), dtype=np.int32)
    pred = np.zeros((3, 10), dtype=np.int32)
    ref[0, 0:6] = 10
    ref[2, 0:4] = 20
    pred[0, 0:5] = 7
    pred[2, 2:6] = 3
    pred[1, 7:10] = 9
    return pred, ref


def test_instance_metrics_hand_computed():
    pred, ref = two_ref_three_pred()
    # P1-R1: |∩| 5, |∪| 6, IoU 5/6 (a match). P2-R2: |∩| 2, |∪| 4+4-2 = 6, IoU 1/3 (no match).
    # TP 1, FP 2 (P2, P3), FN 1 (R2).
    # SQ = 5/6; DQ = 1 / (1 + 2/2 + 1/2) = 0.4; PQ = 5/6 * 0.4 = 1/3; F1 = 2/(2+2+1) = 0.4.
    quality = panoptic_quality(pred, ref)
    assert quality["tp"] == 1 and quality["fp"] == 2 and quality["fn"] == 1
    assert quality["sq"] == pytest.approx(5 / 6, abs=1e-12)
    assert quality["dq"] == pytest.approx(0.4, abs=1e-12)
    assert quality["pq"] == pytest.approx(1 / 3, abs=1e-12)
    assert f1_at(pred, ref) == pytest.approx(0.4, abs=1e-12)
    # AJI: R1 pairs with P1 (∩ 5, ∪ 6), R2 with P2 (∩ 2, ∪ 6); unpaired P3 adds 3 to the union.
    # AJI = (5 + 2) / (6 + 6 + 3) = 7/15.
    assert aji(pred, ref) == pytest.approx(7 / 15, abs=1e-12)
    # Dice of the foreground: 2*7 / (12 + 10) = 7/11.
    assert dice(pred, ref) == pytest.approx(7 / 11, abs=1e-12)
    # Below 0.5 the matching is one-to-one by maximum IoU: P2-R2 (1/3) now counts.
    # TP 2, FP 1, FN 0 -> F1 = 4 / (4 + 1) = 0.8.
    assert f1_at(pred, ref, iou=0.3) == pytest.approx(0.8, abs=1e-12)
    combined = instance_metrics(pred, ref)
    assert combined["n_pred"] == 3 and combined["n_ref"] == 2
    assert combined["f1"] == combined["dq"]


def test_instance_metrics_ignore_id_values():
    pred, ref = two_ref_three_pred()
    remap = {0: 0, 7: 1000, 3: 1, 9: 2}
    renamed = np.vectorize(remap.get)(pred)
    assert aji(renamed, ref) == aji(pred, ref)
    assert panoptic_quality(renamed, ref) == panoptic_quality(pred, ref)


def test_aji_lets_one_prediction_pair_with_two_references():
    ref = np.zeros((1, 8), dtype=np.int32)
    ref[0, :4], ref[0, 4:] = 1, 2
    pred = np.ones((1, 8), dtype=np.int32)
    # P-R1 and P-R2 both: ∩ 4, ∪ 8 -> AJI = (4 + 4) / (8 + 8) = 0.5 (Kumar's definition).
    assert aji(pred, ref) == 0.5
    # IoU is exactly 0.5, and a match needs IoU > 0.5: TP 0, FP 1, FN 2, everything 0.
    assert panoptic_quality(pred, ref) == {
        "pq": 0.0,
        "sq": 0.0,
        "dq": 0.0,
        "tp": 0,
        "fp": 1,
        "fn": 2,
    }


def test_instance_metrics_empty_conventions():
    empty = np.zeros((4, 4), dtype=np.int32)
    one = empty.copy()
    one[1:3, 1:3] = 5
    assert aji(empty, empty) == 1.0
    assert panoptic_quality(empty, empty)["pq"] == 1.0
    assert f1_at(empty, empty) == 1.0
    assert dice(empty, empty) == 1.0
    assert aji(one, empty) == 0.0 and aji(empty, one) == 0.0
    assert panoptic_quality(one, empty) == {
        "pq": 0.0,
        "sq": 0.0,
        "dq": 0.0,
        "tp": 0,
        "fp": 1,
        "fn": 0,
    }
    assert aji(one, one) == 1.0 and panoptic_quality(one, one)["pq"] == 1.0


def brute_force(pred: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    """AJI and PQ by explicit mask loops (the slow textbook way)."""
    p_ids = [i for i in np.unique(pred) if i]
    r_ids = [i for i in np.unique(ref) if i]
    inter_sum = union_sum = 0
    used = set()
    for r in r_ids:
        g = ref == r
        scores = [((g & (pred == p)).sum() / (g | (pred == p)).sum(), p) for p in p_ids]
        best = max(scores, key=lambda s: s[0], default=(0.0, None))
        if best[0] > 0:
            s = pred == best[1]
            inter_sum += (g & s).sum()
            union_sum += (g | s).sum()
            used.add(best[1])
        else:
            union_sum += g.sum()
    union_sum += sum((pred == p).sum() for p in p_ids if p not in used)
    ious = []
    for r in r_ids:
        for p in p_ids:
            iou = ((ref == r) & (pred == p)).sum() / ((ref == r) | (pred == p)).sum()
            if iou > 0.5:
                ious.append(iou)
    tp = len(ious)
    pq = (sum(ious) / tp if tp else 0.0) * tp / (tp + 0.5 * (len(p_ids) - tp + len(r_ids) - tp))
    return inter_sum / union_sum, pq


def test_instance_metrics_agree_with_brute_force_on_random_blobs():
    from skimage.segmentation import expand_labels

    rng = np.random.default_rng(0)
    ref = np.zeros((64, 64), dtype=np.int32)
    pred = np.zeros((64, 64), dtype=np.int32)
    ref[tuple(rng.integers(0, 64, (2, 25)))] = np.arange(1, 26)
    ref = expand_labels(ref, 4)
    shifted = np.roll(ref, shift=(0, 1), axis=(0, 1))
    pred = np.where(shifted > 0, shifted * 7 + 3, 0)
    pred[rng.random(pred.shape) < 0.05] = 0
    expected_aji, expected_pq = brute_force(pred, ref)
    assert 0.3 < expected_pq < 0.9  # some matches, not all: a case worth comparing
    assert aji(pred, ref) == pytest.approx(expected_aji, abs=1e-12)
    assert panoptic_quality(pred, ref)["pq"] == pytest.approx(expected_pq, abs=1e-12)


def test_dice_hand_computed():
    a = np.zeros((4, 4), dtype=np.uint8)
    b = np.zeros((4, 4), dtype=np.uint8)
    a[0, :] = 1  # 4 voxels
    b[0, :2] = 2  # 2 voxels, label value irrelevant
    assert dice(a, b) == 2 * 2 / 6
    assert dice(a, np.zeros_like(a)) == 0.0
    with pytest.raises(ValueError, match="shape"):
        dice(a, np.zeros((3, 3)))


def test_hd95_single_voxel_offsets_respect_anisotropic_spacing():
    spacing = (0.7, 0.8, 2.5)
    ref = np.zeros((5, 5, 5), dtype=bool)
    ref[2, 2, 2] = True
    along_k = np.zeros_like(ref)
    along_k[2, 2, 3] = True
    along_i = np.zeros_like(ref)
    along_i[4, 2, 2] = True
    assert hd95(along_k, ref, spacing) == pytest.approx(2.5)  # one voxel along k
    assert hd95(along_i, ref, spacing) == pytest.approx(1.4)  # two voxels along i
    assert hd95(ref, ref, spacing) == 0.0


def test_hd95_is_the_larger_directed_95th_percentile():
    spacing = (1.0, 1.0, 2.5)
    ref = np.zeros((5, 5, 5), dtype=bool)
    ref[2, 2, 0] = True
    pred = ref.copy()
    pred[2, 2, 2] = True
    # pred -> ref distances [0, 5.0] mm: 95th percentile (linear) 4.75; ref -> pred [0].
    assert hd95(pred, ref, spacing) == pytest.approx(4.75)
    assert hd95(ref, pred, spacing) == pytest.approx(4.75)


def test_hd95_between_parallel_planes():
    ref = np.zeros((6, 6, 6), dtype=np.uint8)
    pred = np.zeros_like(ref)
    ref[:, :, 1] = 1
    pred[:, :, 3] = 1
    # Every surface voxel is 2 slices of 2.5 mm from the other plane.
    assert hd95(pred, ref, (0.7, 0.7, 2.5)) == pytest.approx(5.0)


def test_hd95_empty_conventions():
    empty = np.zeros((3, 3), dtype=bool)
    full = np.ones((3, 3), dtype=bool)
    assert hd95(empty, empty) == 0.0
    assert math.isinf(hd95(full, empty)) and math.isinf(hd95(empty, full))
    with pytest.raises(ValueError, match="spacing"):
        hd95(full, full, spacing=(1.0,))


def lesion_case() -> tuple[np.ndarray, np.ndarray]:
    ref = np.zeros((20, 20, 4), dtype=np.uint8)
    pred = np.zeros_like(ref)
    ref[2:5, 2:5, 0:2] = 1  # lesion A, 18 voxels
    ref[10:13, 10:13, 0:2] = 1  # lesion B, 18 voxels, missed
    pred[3:6, 3:6, 0:2] = 1  # overlaps A by 2x2x2 = 8 voxels
    pred[15:18, 2:5, 0:2] = 1  # overlaps nothing
    return pred, ref


def test_lesion_detection_one_tp_one_fp_one_fn():
    pred, ref = lesion_case()
    result = lesion_detection(pred, ref, spacing=(1.0, 1.0, 2.0))
    assert (result["tp"], result["fp"], result["fn"]) == (1, 1, 1)
    assert result["sensitivity"] == 0.5 and result["precision"] == 0.5 and result["f1"] == 0.5
    first, second = result["lesions"]
    assert first["detected"] and not second["detected"]
    assert first["voxels"] == 18 and first["volume_ml"] == pytest.approx(0.036)
    assert first["overlap_fraction"] == pytest.approx(8 / 18)
    assert first["matches"] == [1]
    assert [p["confirmed"] for p in result["predicted"]] == [True, False]
    # Covering 8 of 18 voxels (44%) is not enough at 50%, on either side.
    strict = lesion_detection(pred, ref, min_overlap=0.5)
    assert (strict["tp"], strict["fp"], strict["fn"]) == (0, 2, 2)
    assert "volume_ml" not in strict["lesions"][0]


def test_lesion_detection_empty_conventions():
    pred, ref = lesion_case()
    empty = np.zeros_like(ref)
    both = lesion_detection(empty, empty)
    assert (both["tp"], both["fp"], both["fn"], both["f1"]) == (0, 0, 0, 1.0)
    assert math.isnan(both["sensitivity"]) and math.isnan(both["precision"])
    missed = lesion_detection(empty, ref)
    assert missed["fn"] == 2 and missed["sensitivity"] == 0.0 and missed["f1"] == 0.0


def test_lesion_detection_one_prediction_spanning_two_lesions():
    ref = np.zeros((1, 9), dtype=np.uint8)
    ref[0, 1:3] = ref[0, 5:7] = 1
    pred = np.zeros_like(ref)
    pred[0, 0:8] = 1
    result = lesion_detection(pred, ref)
    assert (result["tp"], result["fp"], result["fn"], result["tp_pred"]) == (2, 0, 0, 1)
    assert result["predicted"][0]["matches"] == [1, 2]


def test_volumes_in_millilitres():
    label = np.zeros((20, 20, 10), dtype=np.uint8)
    label[:10, :10, :10] = 1  # 1000 voxels
    label[10:12, :5, :] = 2  # 100 voxels
    assert volumes_ml(label, (1.0, 1.0, 1.0)) == {1: 1.0, 2: 0.1}
    # 0.5 x 0.5 x 2 mm = 0.5 mm³ per voxel.
    assert volumes_ml(label, (0.5, 0.5, 2.0)) == pytest.approx({1: 0.5, 2: 0.05})
    assert volumes_ml(np.zeros((2, 2)), (1.0, 1.0)) == {}


def test_component_volumes_largest_first_with_world_centroids():
    mask = np.zeros((10, 10, 10), dtype=bool)
    mask[0:2, 0:2, 0:2] = True  # 8 voxels, centroid (0.5, 0.5, 0.5)
    mask[5:9, 5:9, 5:9] = True  # 64 voxels, centroid (6.5, 6.5, 6.5)
    affine = np.diag([2.0, 2.0, 3.0, 1.0])
    affine[:3, 3] = [-10.0, 0.0, 5.0]
    rows = component_volumes(mask, (2.0, 2.0, 3.0), affine)
    assert [r["voxels"] for r in rows] == [64, 8]
    assert rows[0]["volume_ml"] == pytest.approx(64 * 12 / 1000)
    assert rows[0]["centroid_voxel"] == [6.5, 6.5, 6.5]
    assert rows[0]["centroid_mm"] == pytest.approx([3.0, 13.0, 24.5])
    assert component_volumes(np.zeros((3, 3, 3)), (1.0, 1.0, 1.0)) == []


def test_morphology_table_values_and_units():
    instances = np.zeros((10, 12), dtype=np.int32)
    instances[1:4, 1:5] = 7  # 3 x 4 rectangle, area 12
    instances[6:9, 6:9] = 2  # 3 x 3 square, area 9
    intensity = np.zeros((10, 12), dtype=np.float32)
    intensity[instances == 7] = 5.0
    intensity[instances == 2] = 2.0
    table = morphology_table(instances, intensity, spacing=(0.0005, 0.0005))
    assert list(table["label"]) == [2, 7]
    assert list(table["area_px"]) == [9, 12]
    assert list(table["mean_intensity"]) == [2.0, 5.0]
    assert list(table["centroid_0"]) == [7.0, 2.0]
    assert list(table["centroid_1"]) == [7.0, 2.5]
    assert table["eccentricity"].iloc[0] == pytest.approx(0.0, abs=1e-9)  # a square
    assert list(table["area_um2"]) == pytest.approx([2.25, 3.0])  # 0.5 µm pixels
    assert list(table["perimeter_um"]) == pytest.approx(list(table["perimeter_px"] * 0.5))

    rgb = np.stack([intensity, intensity * 2, intensity * 3], axis=-1)
    coloured = morphology_table(instances, rgb)
    assert list(coloured["mean_intensity_2"]) == [6.0, 15.0]
    assert "area_um2" not in coloured

    empty = morphology_table(np.zeros((4, 4), dtype=np.int32), np.zeros((4, 4, 3)))
    assert empty.empty and "area_px" in empty and "mean_intensity_0" in empty
    with pytest.raises(ValueError, match="does not match"):
        morphology_table(instances, intensity[:5])
