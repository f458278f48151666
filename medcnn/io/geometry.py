"""Slice geometry: from DICOM patient coordinates (LPS, mm) to a NIfTI voxel-to-RAS+ affine.

Conventions, the same as dcm2niix and ``nibabel.nicom``:

* ImageOrientationPatient (IOP) holds the row direction (the direction in which the column
  index increases, i.e. along a row) and then the column direction, both in LPS.
* ImagePositionPatient (IPP) is the LPS position of the centre of the first stored pixel.
* NIfTI voxel axes are ``(i, j, k)`` = (column, row, slice); the slice axis points from the
  first to the last slice *sorted along the slice normal* ``row x col``, and its length and
  direction come from the IPP differences, never from SliceThickness (which is the slab
  thickness and is often different from the slice spacing).
* RAS+ = LPS with x and y negated.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: Two slice positions closer than this (mm, along the normal) are the same position.
POSITION_TOLERANCE_MM = 0.01
#: Relative deviation of one slice gap from the typical gap above which spacing is "uneven".
SPACING_RELATIVE_TOLERANCE = 0.01
#: Angle (degrees) between the slice axis and the slice normal above which we call it tilt.
TILT_TOLERANCE_DEG = 0.01

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def slice_normal(iop: np.ndarray | list[float]) -> np.ndarray:
    """Unit normal ``row x col`` (LPS) of an ImageOrientationPatient."""
    iop = np.asarray(iop, dtype=np.float64)
    normal = np.cross(iop[:3], iop[3:6])
    norm = np.linalg.norm(normal)
    if norm < 1e-6:
        raise ValueError(f"degenerate ImageOrientationPatient {iop.tolist()}")
    return normal / norm


def in_plane_affine_lps(
    iop: np.ndarray | list[float], ipp: np.ndarray | list[float], spacing_rc: tuple[float, float]
) -> np.ndarray:
    """4x4 LPS affine of one slice with a unit-normal (1 mm) third column.

    Args:
        iop: ImageOrientationPatient (6 numbers).
        ipp: ImagePositionPatient (3 numbers, mm).
        spacing_rc: PixelSpacing as DICOM stores it: (row spacing, column spacing) in mm,
            i.e. the distance between rows and then between columns.
    """
    iop = np.asarray(iop, dtype=np.float64)
    row_mm, col_mm = spacing_rc
    affine = np.eye(4)
    affine[:3, 0] = iop[:3] * col_mm  # i: along a row, so adjacent columns
    affine[:3, 1] = iop[3:6] * row_mm  # j: down a column, so adjacent rows
    affine[:3, 2] = slice_normal(iop)
    affine[:3, 3] = np.asarray(ipp, dtype=np.float64)
    return affine


@dataclass
class SpacingReport:
    """How regular the slice positions of a stack are.

    Attributes:
        positions: slice positions along the normal, sorted ascending (mm).
        step: the typical gap (median, mm); 0 for a single slice.
        uneven: whether some gap differs from ``step`` by more than the tolerance.
        missing: number of slices that appear to be missing (gaps that are a whole
            multiple >= 2 of ``step``).
        gaps: the distinct gaps found (mm, rounded to 1e-3), for the sidecar.
    """

    positions: np.ndarray
    step: float
    uneven: bool
    missing: int
    gaps: list[float] = field(default_factory=list)


def analyse_spacing(positions: np.ndarray) -> SpacingReport:
    """Check the gaps between sorted slice positions (mm along the normal)."""
    positions = np.sort(np.asarray(positions, dtype=np.float64))
    if len(positions) < 2:
        return SpacingReport(positions, 0.0, False, 0, [])
    gaps = np.diff(positions)
    step = float(np.median(gaps))
    tol = max(POSITION_TOLERANCE_MM, SPACING_RELATIVE_TOLERANCE * step)
    uneven = bool(np.any(np.abs(gaps - step) > tol))
    missing = 0
    if uneven and step > 0:
        multiples = np.round(gaps / step)
        whole = (multiples >= 2) & (np.abs(gaps - multiples * step) <= tol * multiples)
        missing = int(np.sum(multiples[whole] - 1))
    distinct = sorted({round(float(g), 3) for g in gaps})
    return SpacingReport(positions, step, uneven, missing, distinct)


def tilt_degrees(k_axis: np.ndarray, normal: np.ndarray) -> float:
    """Angle in degrees between the slice axis (first to last IPP) and the slice normal.

    Non-zero for CT acquired with a tilted gantry: the slices are parallel but shifted within
    their planes, so the voxel grid is sheared.
    """
    k_axis = np.asarray(k_axis, dtype=np.float64)
    norm = np.linalg.norm(k_axis)
    if norm == 0:
        return 0.0
    cosine = abs(float(np.dot(k_axis / norm, normal)))
    return float(np.degrees(np.arccos(min(1.0, cosine))))


def stack_affine(
    iop: np.ndarray | list[float],
    first_ipp: np.ndarray | list[float],
    last_ipp: np.ndarray | list[float],
    n_slices: int,
    spacing_rc: tuple[float, float],
    single_slice_step: float = 1.0,
) -> np.ndarray:
    """Voxel-to-RAS+ affine of a stack of parallel slices, sorted along the normal.

    The k column is the mean IPP step from the first to the last slice, so a tilted gantry
    gives a (correct) sheared affine and a stack is placed exactly where the scanner says.

    Args:
        iop: ImageOrientationPatient shared by the slices.
        first_ipp: IPP of slice k = 0 (LPS mm).
        last_ipp: IPP of slice k = n_slices - 1 (LPS mm).
        n_slices: number of slices.
        spacing_rc: (row spacing, column spacing) in mm, as in PixelSpacing.
        single_slice_step: slice step (mm) used when there is only one slice.
    """
    affine = in_plane_affine_lps(iop, first_ipp, spacing_rc)
    if n_slices > 1:
        affine[:3, 2] = (np.asarray(last_ipp, float) - np.asarray(first_ipp, float)) / (
            n_slices - 1
        )
    else:
        affine[:3, 2] *= single_slice_step
    return LPS_TO_RAS @ affine


def resample_regular(
    data: np.ndarray, positions: np.ndarray, step: float, nearest: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Linearly interpolate a stack onto evenly spaced positions along k.

    Args:
        data: voxels ``(i, j, k, ...)``; k ordered like ``positions``.
        positions: ascending slice positions along the normal (mm), one per k.
        step: the target gap in mm (the typical gap of the stack).
        nearest: take the nearest slice instead of interpolating (label maps: a value
            between two labels would be a third label).

    Returns:
        (resampled data with k = round(span / step) + 1 slices, their positions). The first
        and last slices are kept as they are; the gap becomes ``span / (n - 1)``, within
        rounding of ``step``.
    """
    span = float(positions[-1] - positions[0])
    n = int(round(span / step)) + 1 if step > 0 else len(positions)
    targets = np.linspace(positions[0], positions[-1], n)
    upper = np.clip(np.searchsorted(positions, targets, side="right"), 1, len(positions) - 1)
    lower = upper - 1
    width = positions[upper] - positions[lower]
    weight = np.where(width > 0, (targets - positions[lower]) / np.where(width > 0, width, 1), 0)
    shape = (1, 1, n) + (1,) * (data.ndim - 3)
    if nearest:
        weight = (weight >= 0.5).astype(float)
    weight = weight.reshape(shape)
    out = data[:, :, lower] * (1 - weight) + data[:, :, upper] * weight
    return out.astype(np.float32), targets
