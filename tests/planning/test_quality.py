from __future__ import annotations

import numpy as np

from medcnn.planning.quality import check_image, intensity_stats, make_fingerprint


def row(**kw) -> dict[str, str]:
    base = {
        "modality": "DX",
        "dims": "2",
        "photometric": "MONOCHROME2",
        "view": "PA",
        "spacing": "0.15x0.15x1",
        "shape": "2000x2400x1",
    }
    return {**base, **kw}


TRAIN = [row(), row(spacing="0.2x0.2x1", shape="1800x2200x1", modality="CR", view="AP")]
STATS = [(0.0, 4000.0), (10.0, 3500.0)]
FP = make_fingerprint(TRAIN, STATS)


def test_fingerprint_ranges():
    assert FP["modalities"] == ["CR", "DX"]
    assert FP["views"] == ["AP", "PA"]
    assert FP["spacing_mm_min"] == [0.15, 0.15] and FP["spacing_mm_max"] == [0.2, 0.2]
    assert FP["shape_min"] == [1800, 2200] and FP["shape_max"] == [2000, 2400]
    assert FP["intensity_p01_min"] == 0.0 and FP["intensity_p99_max"] == 4000.0


def test_an_image_like_the_training_data_passes():
    assert check_image(FP, row(spacing="0.17x0.17x1", shape="1900x2300x1"), (5.0, 3800.0)) == []


def test_each_kind_of_outlier_is_named():
    assert check_image(FP, row(modality="CT"), None) == [
        "modality CT not in training data (CR, DX)"
    ]
    assert "view LL not in training data" in check_image(FP, row(view="LL"), None)[0]
    assert "MONOCHROME1" in check_image(FP, row(photometric="MONOCHROME1"), None)[0]
    assert "spacing 0.5 mm along i" in check_image(FP, row(spacing="0.5x0.15x1"), None)[0]
    assert "size 256 px" in check_image(FP, row(shape="256x2400x1"), None)[0]
    # an 8-bit image where 12-bit ones were trained
    assert "intensity range" in check_image(FP, row(), (0.0, 255.0))[0]
    assert "3D image" in check_image(FP, row(dims="3"), None)[0]


def test_unknown_view_is_not_an_outlier_and_empty_fingerprint_checks_nothing():
    assert check_image(FP, row(view=""), None) == []
    assert check_image({"n_images": 0}, row(modality="CT"), None) == []


def test_intensity_stats_are_robust_to_a_few_outliers():
    image = np.full((100, 100), 1000.0)
    image[0, :5] = 60000.0  # burned-in text, a marker
    assert intensity_stats(image) == (1000.0, 1000.0)
