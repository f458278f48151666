"""What makes the cohort report readable: values as text and nested tables (no repr, each
value once, rounded), curves on their own axes, merged and split nuclei."""

from __future__ import annotations

import numpy as np

from medcnn.report.figures import curve_panels, history_png
from medcnn.report.html import environment, readable_number, tidy
from medcnn.report.segmentation import merges_and_splits


def test_tidy_joins_intervals_rounds_and_shows_a_value_once():
    metrics = {
        "best_epoch": 7,
        "best": {"epoch": 7, "val_dice": 0.8874512345678},
        "auroc": 0.91234567,
        "auroc_ci": [0.8012345, 0.97],
        "lesion_dice": {"mean": 0.5, "median": 0.55, "ci": [0.4, 0.6], "n": 12},
        "lr": 0.000123,
        "seconds": 1234.5678,
        "bins": [{"low": 0.0, "high": 0.1, "count": 4}],
        "flags": [],
    }
    shown = tidy(metrics)
    assert shown["best_epoch"] == "7" and "epoch" not in shown["best"]
    assert shown["best"]["val_dice"] == "0.887"
    assert shown["auroc"] == "0.912 [0.801, 0.970]" and "auroc_ci" not in shown
    assert shown["lesion_dice"] == "0.500 [0.400, 0.600] (median 0.550, n = 12)"
    assert shown["lr"] == "1.23e-04" and shown["seconds"] == "1234.6"
    assert shown["bins"] == [{"low": "0.000", "high": "0.100", "count": "4"}]
    html = (
        environment()
        .from_string('{% from "macros.html.j2" import show %}{{ show(v) }}')
        .render(v=shown)
    )
    assert "{'" not in html and "[{" not in html and "<table" in html
    assert readable_number(float("nan")) == "–" and readable_number(12.345) == "12.35"


def test_an_estimate_with_its_interval_is_one_cell():
    assert tidy({"value": 0.8, "low": 0.7, "high": 0.9}) == "0.800 [0.700, 0.900]"
    assert tidy({"mean": 0.8, "ci": [0.7, 0.9], "n": 5}) == "0.800 [0.700, 0.900] (n = 5)"


def test_curves_go_on_axes_of_their_own_and_timing_is_left_out():
    series = {
        "train_loss": [2.0, 1.5],
        "val_loss": [2.2, 1.7],
        "val_dice": [0.1, 0.9],
        "lr": [1e-3, 1e-4],
        "wall_seconds": [80.0, 81.0],
        "patches": [150, 150],
        "val_seconds": [3.0, 3.1],
        "grad_norm": [5.0, 7.0],
        "empty": [float("nan"), float("nan")],
    }
    panels = curve_panels(series)
    assert panels == {
        "loss": {"train_loss": [2.0, 1.5], "val_loss": [2.2, 1.7]},
        "score": {"val_dice": [0.1, 0.9]},
        "learning rate": {"lr": [1e-3, 1e-4]},
        "other": {"grad_norm": [5.0, 7.0]},
    }
    assert history_png([1, 2], series, best_epoch=2)[:8] == b"\x89PNG\r\n\x1a\n"


def test_merged_and_split_nuclei_are_counted():
    reference = np.zeros((20, 20), np.int64)
    reference[2:6, 2:6], reference[2:6, 7:11] = 1, 2  # two nuclei, side by side
    reference[12:18, 2:14] = 3  # one long nucleus
    predicted = np.zeros_like(reference)
    predicted[2:6, 2:11] = 5  # covers both: one merge
    predicted[12:18, 2:8], predicted[12:18, 8:14] = 6, 7  # halves: one split
    assert merges_and_splits(predicted, reference) == {"merged": 1, "split": 1}
    assert merges_and_splits(reference, reference) == {"merged": 0, "split": 0}


def test_a_fold_summary_names_the_kept_epoch_best_or_last():
    from medcnn.stages.report.cohort import _fold_summary

    scores = {"epoch": 20, "val_auroc": 0.8123, "val_loss": 0.51}
    last = _fold_summary({"best_epoch": 20, "best": scores, "kept": "last", "epochs_run": 20})
    assert last["last epoch"] == "20" and last["last val auroc"] == "0.812"
    assert not any(key.startswith("best") for key in last)
    best = _fold_summary({"best_epoch": 7, "best": {**scores, "epoch": 7}, "epochs_run": 17})
    assert best["best epoch"] == "7" and best["epochs run"] == "17"
