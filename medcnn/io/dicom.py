"""Read DICOM images into voxel arrays with their world geometry.

Axis order of every array returned here is NIfTI's: ``(i, j, k)`` = (column, row, slice), so
that the affine maps ``(i, j, k)`` to RAS+ millimetres exactly as nibabel expects.
"""

from __future__ import annotations

import math
import os
import warnings as pywarnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.pixels import apply_modality_lut, get_decoder

from medcnn.io import dicom_values
from medcnn.io.codecs import load_codecs
from medcnn.io.dicom_scan import scan_header
from medcnn.io.errors import DicomReadError
from medcnn.io.files import open_regular
from medcnn.io.limits import Limits, check_dicom_size, pixel_bytes_after_header

# Headers repeat their values file after file: pydicom converts each distinct one once.
dicom_values.install()

__all__ = ["DicomImage", "DicomReadError", "looks_like_dicom", "read_header", "read_image"]

#: Modalities read as projection radiographs (one 2D image, no slice geometry).
PROJECTION_MODALITIES = frozenset({"CR", "DX", "MG", "RF", "XA", "IO", "PX"})


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
        diffusion: for a diffusion series, (b-values, gradient directions in patient LPS),
            one row per volume (a direction of zeros where a volume has none); else None.
    """

    data: np.ndarray
    affine: np.ndarray
    header: Dataset
    meta: dict[str, Any]
    warnings: list[str] = field(default_factory=list)
    diffusion: tuple[np.ndarray, np.ndarray] | None = None


def looks_like_dicom(path: Path) -> bool:
    """True when the file has the DICOM preamble magic ``DICM`` at byte 128."""
    try:
        with open_regular(path) as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


def read_header(
    path: Path, limits: Limits | None = None, tags: frozenset[int] | None = None
) -> Dataset:
    """Read a DICOM header (no pixel data), only from a regular file.

    Args:
        path: the file.
        limits: when given, the declared pixel size (rows x columns x frames x samples x
            bits) is checked against the bytes present and ``limits.max_pixel_bytes``.
        tags: when given, only these top-level elements are needed: a plain file is read
            with :func:`medcnn.io.dicom_scan.scan_header` (its other elements skipped
            unparsed), any other with pydicom as without ``tags``.

    Raises:
        DicomReadError: not DICOM, the header cannot be parsed (whatever pydicom raised),
            or its declared pixels are too large or do not match the bytes present.
    """
    try:
        with open_regular(path) as fh:
            size = os.fstat(fh.fileno()).st_size
            scanned = scan_header(fh, size, tags) if tags is not None else None
            if scanned is not None:
                ds, pixels = scanned
                fh.seek(pixels if pixels is not None else size)
            else:
                fh.seek(128)
                magic = fh.read(4) == b"DICM"
                fh.seek(0)
                # Large values (private blobs, icons) are never loaded: the header pass
                # reads what grouping needs, so a hostile header costs little memory.
                ds = pydicom.dcmread(
                    fh, stop_before_pixels=True, force=not magic, defer_size=1 << 20
                )
            length, left = pixel_bytes_after_header(fh, size)
    except DicomReadError:
        raise
    except Exception as exc:  # hostile headers make pydicom raise almost any type
        raise DicomReadError(f"not a readable DICOM file: {type(exc).__name__}: {exc}") from exc
    # force=True parses almost anything; a real image header has at least these.
    if "SOPClassUID" not in ds and "Modality" not in ds:
        raise DicomReadError("not a DICOM file: no SOPClassUID or Modality element")
    has_pixels = left > 0 or length is not None
    if limits is not None and has_pixels:
        syntax = str(getattr(ds, "file_meta", {}).get("TransferSyntaxUID", ""))
        check_dicom_size(ds, syntax, length, left, limits)
    return ds


def number_list(ds: Dataset | None, keyword: str) -> list[float] | None:
    """A numeric attribute as floats; None when absent, empty, not numeric or not finite.

    Hostile or sloppy exports put text in numeric attributes (``WindowCenter = "abc"``);
    such a value is treated as absent rather than failing the whole image.
    """
    if ds is None:
        return None
    try:
        value = ds.get(keyword)
        if value is None or value == "":
            return None
        items = value if isinstance(value, (list, tuple, MultiValue)) else [value]
        numbers = [float(v) for v in items]
    except (TypeError, ValueError, OverflowError, AttributeError):
        return None
    return numbers if numbers and all(math.isfinite(v) for v in numbers) else None


def orientation(ds: Dataset | None) -> list[float] | None:
    """ImageOrientationPatient when usable: six finite numbers, two non-parallel unit-ish
    directions; None otherwise (all zeros, NaN, too short), so the default is used."""
    iop = number_list(ds, "ImageOrientationPatient")
    if iop is None or len(iop) < 6:
        return None
    row, col = np.array(iop[:3]), np.array(iop[3:6])
    if min(np.linalg.norm(row), np.linalg.norm(col)) < 1e-3:
        return None
    if np.linalg.norm(np.cross(row / np.linalg.norm(row), col / np.linalg.norm(col))) < 1e-3:
        return None
    return iop[:6]


def pixel_spacing(ds: Dataset) -> tuple[tuple[float, float], str]:
    """Row and column spacing in mm, and which attribute gave it.

    For projection radiographs ``PixelSpacing`` (calibrated at the patient) is preferred over
    ``ImagerPixelSpacing`` (at the detector), as dcm2niix does.
    """
    for keyword in ("PixelSpacing", "ImagerPixelSpacing", "NominalScannedPixelSpacing"):
        values = number_list(ds, keyword)
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


#: Codecs whose decoders may recover from a damaged stream with only a warning.
#: Prefixes: JPEG-LS (.80, .81), JPEG 2000 (.90-.93), HTJ2K (.201-.203).
WARNING_IS_ERROR_SYNTAXES = (
    "1.2.840.10008.1.2.4.8",
    "1.2.840.10008.1.2.4.9",
    "1.2.840.10008.1.2.4.20",
)


JPEG_LS_PREFIX = "1.2.840.10008.1.2.4.8"


def _has_plugin(syntax: str, plugin: str) -> bool:
    try:
        return plugin in get_decoder(pydicom.uid.UID(syntax)).available_plugins
    except (NotImplementedError, ValueError):
        return False


def decoded_pixels(ds: Dataset) -> np.ndarray:
    """``ds.pixel_array``, checked: decode errors, and for JPEG 2000 and JPEG-LS decode
    warnings too, raise; so do frames that do not fill the declared size and values outside
    what BitsStored can hold (a damaged lossless stream).

    Raises:
        DicomReadError: the reason, with the transfer syntax.
    """
    syntax = str(getattr(ds, "file_meta", {}).get("TransferSyntaxUID", ""))
    load_codecs(syntax or None)  # the codec libraries, where medcnn ingest deferred them
    name = getattr(pydicom.uid.UID(syntax), "name", syntax) if syntax else "?"
    if syntax.startswith(JPEG_LS_PREFIX) and _has_plugin(syntax, "pyjpegls"):
        # CharLS reports a damaged stream; libjpeg's JPEG-LS decoder returns pixels anyway.
        ds.pixel_array_options(decoding_plugin="pyjpegls")
    with pywarnings.catch_warnings(record=True) as caught:
        pywarnings.simplefilter("always")
        try:
            pixels = ds.pixel_array
        except Exception as exc:  # pydicom raises many types for truncated/undecodable data
            raise DicomReadError(
                f"cannot decode pixel data ({name}): {type(exc).__name__}: {exc}"
            ) from exc
    strict = syntax.startswith(WARNING_IS_ERROR_SYNTAXES)
    if strict and caught:
        raise DicomReadError(f"decoder warned on {name} pixel data: {caught[0].message}")
    check_decoded(pixels, ds, name)
    return pixels


def check_decoded(pixels: np.ndarray, ds: Dataset, name: str) -> None:
    """Raise when decoded pixels do not fill the declared frames or exceed BitsStored."""
    rows, columns = int(ds.Rows), int(ds.Columns)
    frames = int((number_list(ds, "NumberOfFrames") or [1])[0])
    samples = int((number_list(ds, "SamplesPerPixel") or [1])[0])
    expected = (rows, columns) if frames == 1 else (frames, rows, columns)
    if samples > 1:
        expected = (*expected, samples)
    if tuple(pixels.shape) != expected:
        raise DicomReadError(
            f"decoded {name} pixels {tuple(pixels.shape)} do not fill the declared "
            f"frames {expected}"
        )
    bits = int((number_list(ds, "BitsStored") or [0])[0])
    # Only for codecs that return exactly what was encoded: native data of old files may
    # carry overlays in the unused high bits.
    lossless = str(getattr(ds, "file_meta", {}).get("TransferSyntaxUID", "")).startswith(
        WARNING_IS_ERROR_SYNTAXES
    )
    integer = pixels.size and np.issubdtype(pixels.dtype, np.integer)
    if lossless and samples == 1 and 0 < bits < 32 and integer:
        signed = int((number_list(ds, "PixelRepresentation") or [0])[0]) == 1
        lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
        if int(pixels.min()) < lo or int(pixels.max()) > hi:
            raise DicomReadError(
                f"decoded {name} values exceed BitsStored {bits}: damaged pixel data"
            )


def read_image(path: Path) -> DicomImage:
    """Decode a single-frame DICOM image with its geometry.

    Raises:
        DicomReadError: no pixel data, undecodable or truncated pixel data, or an
            unsupported layout; the message is fit for ``quarantine.tsv``.
    """
    try:
        with open_regular(path) as fh:
            ds = pydicom.dcmread(fh, force=not looks_like_dicom(path))
    except Exception as exc:  # hostile files make pydicom raise almost any type
        raise DicomReadError(f"not a readable DICOM file: {type(exc).__name__}: {exc}") from exc
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        sop = ds.get("SOPClassUID")
        name = getattr(sop, "name", None) or str(sop or "unknown SOP class")
        raise DicomReadError(f"no pixel data ({name})")
    stored = decoded_pixels(ds)
    frames = int((number_list(ds, "NumberOfFrames") or [1])[0])
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
    iop = orientation(ds) or [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ipp = number_list(ds, "ImagePositionPatient") or [0.0, 0.0, 0.0]
    row_dir = np.array(iop[:3])
    col_dir = np.array(iop[3:6])
    normal = np.cross(row_dir, col_dir)
    thickness = (number_list(ds, "SliceThickness") or [1.0])[0] or 1.0
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
        "BitsStored": int((number_list(ds, "BitsStored") or [0])[0]),
        "RescaleSlope": (number_list(ds, "RescaleSlope") or [1.0])[0],
        "RescaleIntercept": (number_list(ds, "RescaleIntercept") or [0.0])[0],
        "WindowCenter": number_list(ds, "WindowCenter"),
        "WindowWidth": number_list(ds, "WindowWidth"),
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
