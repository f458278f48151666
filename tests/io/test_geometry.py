from __future__ import annotations

import numpy as np
import pytest

from medcnn.io import geometry


def test_stack_affine_axial_lps_to_ras():
    affine = geometry.stack_affine(
        [1, 0, 0, 0, 1, 0], [-10, -20, 30], [-10, -20, 38], 5, (0.5, 0.8)
    )
    expected = np.array(
        [[-0.8, 0, 0, 10], [0, -0.5, 0, 20], [0, 0, 2.0, 30], [0, 0, 0, 1]], dtype=float
    )
    np.testing.assert_allclose(affine, expected)


def test_single_slice_uses_the_given_step_along_the_normal():
    affine = geometry.stack_affine([0, 1, 0, 0, 0, -1], [1, 2, 3], [1, 2, 3], 1, (1, 1), 4.0)
    # Sagittal: normal = row x col = (0,1,0) x (0,0,-1) = (-1, 0, 0) in LPS -> +x in RAS.
    np.testing.assert_allclose(affine[:3, 2], [4.0, 0, 0])


def test_even_spacing():
    report = geometry.analyse_spacing(np.array([0.0, 2.0, 4.0, 6.0]))
    assert report.step == pytest.approx(2.0)
    assert not report.uneven and report.missing == 0


def test_missing_slice_is_counted():
    report = geometry.analyse_spacing(np.array([0.0, 2.0, 6.0, 8.0, 10.0]))
    assert report.uneven and report.missing == 1
    assert report.gaps == [2.0, 4.0]


def test_uneven_spacing_without_missing_slices():
    report = geometry.analyse_spacing(np.array([0.0, 2.0, 4.0, 7.0, 9.0]))
    assert report.uneven and report.missing == 0


def test_tilt_angle():
    normal = np.array([0.0, 0.0, 1.0])
    step = np.array([0.0, np.tan(np.radians(15.0)), 1.0])
    assert geometry.tilt_degrees(step, normal) == pytest.approx(15.0)
    assert geometry.tilt_degrees(normal * 3, normal) == pytest.approx(0.0)


def test_resample_regular_fills_a_missing_slice_by_interpolation():
    positions = np.array([0.0, 2.0, 6.0])
    data = np.zeros((1, 1, 3), dtype=np.float32)
    data[0, 0] = [10.0, 20.0, 40.0]
    out, targets = geometry.resample_regular(data, positions, 2.0)
    np.testing.assert_allclose(targets, [0, 2, 4, 6])
    np.testing.assert_allclose(out[0, 0], [10, 20, 30, 40])
