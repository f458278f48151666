"""Held-out summaries of segmentation predictions: means, patient bootstrap, pooled lesions."""

from __future__ import annotations

import pytest

from medcnn.metrics.summary import bootstrap_mean, summarise


def test_bootstrap_mean_resamples_patients_not_images():
    # patient a has two images scoring 1.0, patient b one scoring 0.0
    out = bootstrap_mean([1.0, 1.0, 0.0], ["a", "a", "b"], n_resamples=200, seed=0)
    assert out["mean"] == pytest.approx(2 / 3)
    assert out["median"] == 1.0
    assert out["n"] == 3
    # resampled cohorts are {a,a}, {b,b} or {a,b}: means 1, 0 or 2/3
    assert out["ci"][0] == 0.0 and out["ci"][1] == 1.0
    # NaN (an undefined score) is left out, not counted as zero
    assert bootstrap_mean([0.5, float("nan")], ["a", "b"], 0)["mean"] == 0.5


def _lesion_image(series, dice, tp, fn, fp, ref_ml, pred_ml):
    return {
        "series": series,
        "volume_ml": {"lesion": pred_ml},
        "metrics": {
            "lesion": {
                "dice": dice,
                "hd95_mm": 2.0,
                "lesions_detected": tp,
                "lesions_missed": fn,
                "false_positive_lesions": fp,
                "reference_volume_ml": ref_ml,
            }
        },
    }


def test_summarise_pools_lesions_and_compares_volumes():
    predictions = [
        {"subject": "a", "images": [_lesion_image("s1", 0.8, 2, 0, 1, 1.0, 1.5)]},
        {"subject": "b", "images": [_lesion_image("s2", 0.6, 1, 1, 0, 2.0, 1.0)]},
        {"subject": "c", "images": [{"series": "s3", "metrics": None}]},  # unlabelled
    ]
    test, images, points = summarise(predictions, instance=False, n_resamples=0)
    assert test["lesion_dice"]["mean"] == pytest.approx(0.7)
    assert test["lesions"] == {
        "tp": 3,
        "fn": 1,
        "fp": 1,
        "sensitivity": 0.75,
        "precision": 0.75,
    }
    assert test["volume_ml"]["mean_difference"] == pytest.approx(-0.25)
    assert test["patients"] == 2 and len(images) == 2
    assert points == [(1.0, 1.5), (2.0, 1.0)]
