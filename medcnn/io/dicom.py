"""Read DICOM images into voxel arrays with their world geometry.

Axis order of every array returned here is NIfTI's: ``(i, j, k)`` = (column, row, slice), so
that the affine maps ``(i, j, k)`` to RAS+ millimetres exactly as nibabel expects.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_modality_lut

#: Modalities read as projection radiographs (one 2D image, no slice geometry).
PROJECTION_MODALITIES = frozenset({"CR", "DX", "MG", "RF", "XA", "IO", "PX"})


class DicomReadError(ValueError):
    """A file that cannot become an image; the message says why, for ``quarantine.tsv``."""


@dataclass
class DicomImage:
    """One decoded DICOM image.

    Attributes:
        data: voxels after the modality LUT (RescaleSlope/Intercept) and with MONOCHROME1
            inverted so that higher always means brighter (more attenuation on a
            radiograph). From :func:`read_image`: float32 ``(columns, rows, 1)``; from
            :func:`medcnn.io.dicom_series.assemble_series`: ``(i, j, k)``, ``(i, j, k, t)``
            or RGB ``(i, j, k, t, 3)``, in the smallest exact type.
        affine: 4x4 voxel-to-RAS+ matrix in millimetres.
        header: the dataset without pixel data (identifiers still in it: handle with care).
        meta: non-identifying acquisition facts for the sidecar.
        warnings: problems worth telling the user about (never fatal).
    """

    data: np.ndarray
    affine: np.ndarray
    header: Dataset
    meta: dict[str, Any]
    warnings: list[str] = field(default_factory=list)


def looks_like_dicom(path: Path) -> bool:
    """True when the file has the DICOM preamble magic ``DICM`` at byte 128."""
    try:
        with open(path, "rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


def read_header(path: Path) -> Dataset:
    """Read a DICOM header (no pixel data).

    Raises:
        DicomReadError: not DICOM, or the header cannot be parsed.
    """
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=not looks_like_dicom(path))
    except (InvalidDicomError, EOFError, OSError, ValueError, KeyError, TypeError) as exc:
        raise DicomReadError(f"not a readable DICOM file: {type(exc).__name__}: {exc}") from exc
    # force=True parses almost anything; a real image header has at least these.
    if "SOPClassUID" not in ds and "Modality" not in ds:
        raise DicomReadError("not a DICOM file: no SOPClassUID or Modality element")
    return ds


def _float_list(ds: Dataset, keyword: str) -> list[float] | None:
    value = ds.get(keyword)
    if value is None or value == "":
        return None
    if isinstance(value, (list, tuple, pydicom.multival.MultiValue)):
        return [float(v) for v in value]
    return [float(value)]


def pixel_spacing(ds: Dataset) -> tuple[tuple[float, float], str]:
    """Row and column spacing in mm, and which attribute gave it.

    For projection radiographs ``PixelSpacing`` (calibrated at the patient) is preferred over
    ``ImagerPixelSpacing`` (at the detector), as dcm2niix does.
    """
    for keyword in ("PixelSpacing", "ImagerPixelSpacing", "NominalScannedPixelSpacing"):
        values = _float_list(ds, keyword)
        if values and len(values) >= 2 and all(v > 0 for v in values[:2]):
            return (values[0], values[1]), keyword
    return (1.0, 1.0), "none"


def invert_monochrome1(
    values: np.ndarray,
    ds: Dataset,
    slope: float | None = None,
    intercept: float | None = None,
) -> np.ndarray:
    """Invert MONOCHROME1 values so that higher always means brighter.

    The inversion is within the range that the stored bits can hold (after the modality LUT),
    so that the result does not depend on which values happen to occur in this image.

    Args:
        values: pixel values after the modality LUT.
        ds: the dataset (BitsStored, PixelRepresentation, and its modality LUT).
        slope: RescaleSlope to use instead of the dataset's (per-frame values of an enhanced
            multi-frame file); ``intercept`` likewise.
    """
    bits = int(ds.get("BitsStored", 16))
    signed = int(ds.get("PixelRepresentation", 0)) == 1
    lo_hi = (
        np.array([-(2 ** (bits - 1)), 2 ** (bits - 1) - 1])
        if signed
        else np.array([0, 2**bits - 1])
    )
    if slope is None:
        mapped = apply_modality_lut(lo_hi, ds).astype(np.float64)
    else:
        mapped = lo_hi * float(slope) + float(intercept or 0.0)
    lo, hi = np.sort(mapped)
    return lo + hi - values


def read_image(path: Path) -> DicomImage:
    """Decode a single-frame DICOM image with its geometry.

    Raises:
        DicomReadError: no pixel data, undecodable or truncated pixel data, or an
            unsupported layout; the message is fit for ``quarantine.tsv``.
    """
    try:
        ds = pydicom.dcmread(path, force=not looks_like_dicom(path))
    except (InvalidDicomError, EOFError, OSError, ValueError, KeyError, TypeError) as exc:
        raise DicomReadError(f"not a readable DICOM file: {type(exc).__name__}: {exc}") from exc
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        sop = ds.get("SOPClassUID")
        name = getattr(sop, "name", None) or str(sop or "unknown SOP class")
        raise DicomReadError(f"no pixel data ({name})")
    try:
        stored = ds.pixel_array
    except Exception as exc:  # pydicom raises many types for truncated/undecodable data
        raise DicomReadError(
            f"cannot decode pixel data ({ds.file_meta.get('TransferSyntaxUID', '?')}): "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    if frames != 1 or stored.ndim != 2:
        raise DicomReadError(
            f"multi-frame or colour image (frames={frames}, {photometric}, shape={stored.shape})"
            " is not supported by the radiograph reader yet"
        )

    values = apply_modality_lut(stored, ds).astype(np.float32)
    warnings: list[str] = []
    if photometric == "MONOCHROME1":
        values = invert_monochrome1(values, ds).astype(np.float32)

    (row_mm, col_mm), spacing_source = pixel_spacing(ds)
    if spacing_source == "none":
        warnings.append("no PixelSpacing or ImagerPixelSpacing: assuming 1 mm")

    # DICOM patient space is LPS; NIfTI is RAS: negate x and y. Radiographs usually carry no
    # ImageOrientationPatient; then rows run along +x (patient left) and columns down (+y, P in
    # LPS terms is meaningless for a projection), the same assumption dcm2niix makes.
    iop = _float_list(ds, "ImageOrientationPatient") or [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ipp = _float_list(ds, "ImagePositionPatient") or [0.0, 0.0, 0.0]
    row_dir = np.array(iop[:3])
    col_dir = np.array(iop[3:6])
    normal = np.cross(row_dir, col_dir)
    thickness = (_float_list(ds, "SliceThickness") or [1.0])[0] or 1.0
    lps = np.eye(4)
    lps[:3, 0] = row_dir * col_mm  # i: along a row, i.e. across columns
    lps[:3, 1] = col_dir * row_mm  # j: down a column, i.e. across rows
    lps[:3, 2] = normal * thickness
    lps[:3, 3] = ipp
    affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps

    meta = {
        "Modality": str(ds.get("Modality", "")),
        "SOPClassUID": str(ds.get("SOPClassUID", "")),
        "Manufacturer": str(ds.get("Manufacturer", "")),
        "ManufacturersModelName": str(ds.get("ManufacturerModelName", "")),
        "BodyPartExamined": str(ds.get("BodyPartExamined", "")),
        "ViewPosition": str(ds.get("ViewPosition", "")),
        "PatientSex": str(ds.get("PatientSex", "")),
        "PhotometricInterpretation": photometric,
        "BitsStored": int(ds.get("BitsStored", 0) or 0),
        "RescaleSlope": float(ds.get("RescaleSlope", 1) or 1),
        "RescaleIntercept": float(ds.get("RescaleIntercept", 0) or 0),
        "WindowCenter": _float_list(ds, "WindowCenter"),
        "WindowWidth": _float_list(ds, "WindowWidth"),
        "PixelSpacing": [row_mm, col_mm],
        "PixelSpacingSource": spacing_source,
        "BurnedInAnnotation": str(ds.get("BurnedInAnnotation", "")),
        "TransferSyntaxUID": str(ds.file_meta.get("TransferSyntaxUID", "")),
        "Rows": int(ds.Rows),
        "Columns": int(ds.Columns),
    }
    # (rows, columns) -> (columns, rows, 1): NIfTI's i runs along a row.
    data = np.ascontiguousarray(values.T[:, :, None])
    ds_header = ds.copy()
    del ds_header.PixelData
    return DicomImage(data=data, affine=affine, header=ds_header, meta=meta, warnings=warnings)
