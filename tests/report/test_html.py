from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from medcnn.report.html import ingest_warnings, layout, metric_rows
from medcnn.report.thumbnail import display_window, windowed_slice


def test_dicom_window_is_used_when_present():
    data = np.linspace(-1000, 1000, 100, dtype=np.float32).reshape(10, 10)
    low, high, source = display_window(data, {"WindowCenter": [40.0], "WindowWidth": [400.0]})
    assert (low, high, source) == (-160.0, 240.0, "DICOM window")


def test_monochrome1_window_is_mirrored_like_the_pixels():
    sidecar = {
        "WindowCenter": [1000.0],
        "WindowWidth": [500.0],
        "PhotometricInterpretation": "MONOCHROME1",
        "BitsStored": 12,
        "RescaleSlope": 1.0,
        "RescaleIntercept": 0.0,
    }
    low, high, _ = display_window(np.zeros((4, 4)), sidecar)
    assert (low, high) == (4095 - 1000 - 250, 4095 - 1000 + 250)


def test_percentiles_without_a_window_ignore_one_hot_pixel(tmp_path):
    data = np.random.default_rng(0).random((50, 40)).astype(np.float32) * 100
    data[0, 0] = 1e6
    low, high, source = display_window(data, {"WindowCenter": None, "WindowWidth": None})
    assert source == "percentiles 0.5-99.5"
    assert 0 <= low < 1 and 99 < high < 100
    path = tmp_path / "x.nii.gz"
    nib.save(nib.Nifti1Image(data[:, :, None], np.eye(4)), path)
    shown, text = windowed_slice(path, {}, (1, 99))
    assert shown.shape == (50, 40) and shown.min() == 0.0 and shown.max() == 1.0
    assert text.startswith("percentiles 1-99 [")


def test_unreadable_thumbnail_names_the_file(tmp_path):
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(b"not a nifti")
    with pytest.raises(ValueError, match="bad.nii.gz: cannot read image"):
        windowed_slice(bad, {})


def test_ingest_warnings_add_burned_in_text_and_uneven_spacing_once():
    sidecar = {
        "Warnings": ["no PixelSpacing or ImagerPixelSpacing: assuming 1 mm"],
        "BurnedInAnnotation": "YES",
        "PixelSpacing": [0.2, 0.1],
    }
    warnings = ingest_warnings(sidecar)
    assert len(warnings) == 3
    assert "burned-in annotation" in warnings[1]
    assert warnings[2] == "uneven pixel spacing 0.2 x 0.1 mm (row x column)"
    assert ingest_warnings({"PixelSpacing": [0.1, 0.1], "BurnedInAnnotation": "NO"}) == []


def test_metric_rows_show_intervals_in_either_spelling():
    rows = dict(
        metric_rows(
            {
                "auroc": 0.8123,
                "auroc_ci": [0.7, 0.9],
                "sensitivity": {"value": 0.5, "low": 0.25, "high": 0.75},
                "device": "cpu",
                "nested": {"epochs": 3},
                "missing": float("nan"),
            }
        )
    )
    assert rows == {
        "auroc": "0.812 [0.700, 0.900]",
        "sensitivity": "0.500 [0.250, 0.750]",
        "device": "cpu",
        "nested.epochs": "3",
        "missing": "–",
    }


def test_layout_has_every_section_the_templates_use():
    lay = layout()
    for key in ("images", "predictions", "saliency", "faithfulness", "warnings", "provenance"):
        assert lay["subject"]["sections"][key]["caption"]
    for key in ("manifest", "quarantine", "evaluation", "subgroups", "subjects", "failures"):
        assert lay["cohort"]["sections"][key]["caption"]
