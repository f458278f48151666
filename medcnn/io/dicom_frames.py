"""One :class:`FrameInfo` per 2D frame of a DICOM header (no pixel data is read).

Single-frame files, each frame of an enhanced multi-frame file (functional groups), the
frames of a legacy multi-frame file (time points), and Siemens mosaic files.
"""

from __future__ import annotations

import math
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from medcnn.io.dicom import number_list, orientation, pixel_spacing

DEFAULT_IOP = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
COLOUR_PHOTOMETRICS = frozenset(
    {"RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT", "YBR_PARTIAL_420"}
)


@dataclass
class FrameInfo:
    """One 2D frame, described from the header only (no pixel data is read).

    Attributes:
        path: the file holding the frame.
        frame: index of the frame in a multi-frame file, or None for a single-frame file.
        rows: Rows.
        columns: Columns.
        iop: ImageOrientationPatient (row direction, column direction; LPS), or None.
        ipp: ImagePositionPatient (LPS mm), or None.
        spacing: (row spacing, column spacing) in mm.
        spacing_source: the attribute that gave ``spacing``.
        echo: echo number or time as text ("" when unknown); different echoes are split.
        instance: InstanceNumber (0 when absent).
        acquisition: AcquisitionNumber (0 when absent).
        temporal: TemporalPositionIdentifier/Index (0 when absent).
        stack: StackID of an enhanced multi-frame file ("" otherwise).
        localizer: ImageType says LOCALIZER (scout images are never stacked with a volume).
        mosaic: a Siemens mosaic (several slices tiled in one frame).
        photometric: PhotometricInterpretation.
        samples: SamplesPerPixel.
        slope: RescaleSlope of this frame.
        intercept: RescaleIntercept of this frame.
        series_number: SeriesNumber (0 when absent); dcm2niix writes one volume per number.
        component: ``magnitude``, ``phase``, ``real``, ``imaginary``, ``fieldmap`` (a B0 map,
            already in Hz or another unit) or ``""`` (unknown: taken for magnitude).
        philips_scale: Philips' private scale slope (2005,100E) when present and non-zero.
        units: the unit of the frame's values when its header names a physical one (the
            real-world value mapping's or RescaleType, e.g. ``Hz``); ``""`` otherwise.
        bvalue: diffusion b-value (s/mm2) when the header has one.
        gradient: diffusion gradient direction in patient LPS, when present (GE's, given
            along the image's logical axes, turned into LPS as dcm2niix does:
            :func:`ge_gradient`).
        diffusion_note: why a b > 0 frame's direction is unknown (or how far to trust it),
            for the series' warnings; "" when there is nothing to say.
        derived_diffusion: a derived (isotropic / trace / ADC) diffusion image stored with
            the acquired ones (Philips): written apart from the diffusion series.
        echo_number: EchoNumbers (0 when absent).
        acquisition_time: AcquisitionTime (or the frame's acquisition time) in seconds since
            midnight, for slice timing; None when absent.
        time_after_start: Siemens XA's TimeAfterStart (0021,1104) in seconds, the slice's
            time that dcm2niix's slice timing of XA classic files uses; None when absent.
        enhanced: a frame of an enhanced multi-frame file (functional groups): the frames of
            every such file of a series are stacked together (one 4D series, as dcm2niix).
        dimension_index: an enhanced frame's DimensionIndexValues (the order dcm2niix sorts
            a file's frames and volumes in); () otherwise.
        source_series_uid: the file's own SeriesInstanceUID where the header pass grouped it
            under another key (Siemens XA classic files stacked by SeriesTime: see
            :func:`medcnn.ingest.dicom_headers.stacked_series_key`); "" otherwise.
        slice_step: SpacingBetweenSlices, else SliceThickness (mm), when given: the slice
            step of a series without positions.
    """

    path: Path
    frame: int | None
    rows: int
    columns: int
    iop: tuple[float, ...] | None
    ipp: tuple[float, float, float] | None
    spacing: tuple[float, float]
    spacing_source: str
    echo: str = ""
    instance: int = 0
    acquisition: int = 0
    temporal: int = 0
    stack: str = ""
    localizer: bool = False
    mosaic: bool = False
    photometric: str = "MONOCHROME2"
    samples: int = 1
    slope: float = 1.0
    intercept: float = 0.0
    series_number: int = 0
    component: str = ""
    philips_scale: float | None = None
    units: str = ""
    bvalue: float | None = None
    gradient: tuple[float, float, float] | None = None
    derived_diffusion: bool = False
    diffusion_note: str = ""
    echo_number: int = 0
    acquisition_time: float | None = None
    time_after_start: float | None = None
    enhanced: bool = False
    dimension_index: tuple[int, ...] = ()
    source_series_uid: str = ""
    slice_step: float | None = None

    @property
    def colour(self) -> bool:
        """Whether the frame has three samples per pixel."""
        return self.samples == 3 or self.photometric in COLOUR_PHOTOMETRICS

    def orientation(self) -> tuple[float, ...]:
        """IOP, or the default axial orientation when the file has none."""
        return self.iop if self.iop is not None else DEFAULT_IOP

    def position(self) -> np.ndarray:
        """IPP in LPS mm, or the origin when the file has none."""
        return np.asarray(self.ipp if self.ipp is not None else (0.0, 0.0, 0.0), dtype=float)


def to_int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple, pydicom.multival.MultiValue)):
        return "\\".join(str(v) for v in value)
    return str(value)


def _first(ds: Dataset | None, sequence: str) -> Dataset | None:
    if ds is None:
        return None
    seq = ds.get(sequence)
    return seq[0] if seq else None


def _functional(item: Dataset | None, shared: Dataset | None, sequence: str) -> Dataset | None:
    """A functional group macro from the per-frame item, else from the shared groups."""
    return _first(item, sequence) or _first(shared, sequence)


#: Private tags read by raw number (their creators are checked where it matters).
PHILIPS_SCALE_SLOPE = (0x2005, 0x100E)
PHILIPS_PRIVATE_FRAME = (0x2005, 0x140F)
PHILIPS_BVALUE = (0x2001, 0x1003)
PHILIPS_DIRECTION = (0x2001, 0x1004)
PHILIPS_GRADIENT = ((0x2005, 0x10B0), (0x2005, 0x10B1), (0x2005, 0x10B2))
PHILIPS_COMPONENT = (0x2005, 0x1011)
SIEMENS_BVALUE = (0x0019, 0x100C)
SIEMENS_GRADIENT = (0x0019, 0x100E)
SIEMENS_TIME_AFTER_START = (0x0021, 0x1104)
GE_BVALUE = (0x0043, 0x1039)
#: GE's diffusion direction along the phase, frequency and slice axes (dcm2niix's names).
GE_GRADIENT = ((0x0019, 0x10BB), (0x0019, 0x10BC), (0x0019, 0x10BD))
#: GE's pulse sequence name (epi, epiRT, epi2, epi_pepolar...) and its user data 12 (0019,10B3),
#: which says which volumes of an epi_pepolar series are phase-encoded in reverse.
GE_PULSE_SEQUENCE = (0x0019, 0x109C)
GE_USER_DATA12 = (0x0019, 0x10B3)
#: GE's number of diffusion directions (user data 24): 0 marks a b > 0 volume without a
#: direction as a derived (trace / ADC) one; otherwise such a volume is a b = 0 (dcm2niix).
GE_DIRECTIONS = (0x0019, 0x10E0)
UIH_BVALUE = (0x0065, 0x1009)
UIH_GRADIENT = (0x0065, 0x1037)
GE_COMPONENT = (0x0043, 0x102F)
#: Units that say nothing physical (a real-world value mapping to "no units").
NO_UNITS = frozenset({"", "1", "US", "NORMALIZED", "NO UNITS", "ARB", "{ARB'U}", "UNSPECIFIED"})


def _private_float(ds: Dataset | None, tag: tuple[int, int], count: int = 1) -> list[float] | None:
    """A private numeric element as floats; implicit-VR files hold it as raw bytes (UN)."""
    if ds is None or tag not in ds:
        return None
    value = ds[tag].value
    try:
        if isinstance(value, bytes):
            text = value.decode("latin-1").strip("\x00 ")
            if text and all(ch in "0123456789.-+eE \\" for ch in text):
                items = [float(v) for v in text.split("\\")]  # IS/DS read without a VR
            elif len(value) == 4 * count:
                items = list(struct.unpack(f"<{count}f", value))
            elif len(value) == 8 * count:
                items = list(struct.unpack(f"<{count}d", value))
            else:
                items = [float(v) for v in value.decode("ascii").strip("\x00 ").split("\\")]
        elif isinstance(value, (list, tuple, pydicom.multival.MultiValue)):
            items = [float(v) for v in value]
        else:
            items = [float(value)]
    except (ValueError, TypeError, UnicodeDecodeError, struct.error):
        return None
    return items if items and all(math.isfinite(v) for v in items) else None


def ge_pepolar(ds: Dataset) -> tuple[bool, bool]:
    """(phase encoding reversed, moved to SeriesNumber + 1000) for a GE epi_pepolar image, as
    dcm2niix decides it (console/nii_dicom.cpp, heudiconv issue 479, dcm2niix issue 532):
    (0019,109C) names epi_pepolar; user data 12 (0019,10B3) is 1 (every volume reversed),
    2 (reverse then forward: odd TemporalPositionIdentifier reversed) or 3 (forward then
    reverse: even ones reversed). Reversed volumes of an alternating series are written as
    their own series, SeriesNumber + 1000 (checked with the PyPI v1.0.20260724)."""
    reversed_pe = moved = False
    ge = "GE" in str(ds.get("Manufacturer", "")).upper().split()
    mode = _first_float(ds, GE_USER_DATA12) if ge else None
    if mode is not None and "epi_pepolar" in _private_text(ds, GE_PULSE_SEQUENCE):
        volume = to_int(ds.get("TemporalPositionIdentifier"))
        if round(mode) == 1:
            reversed_pe = True
        elif volume > 0 and 2 <= round(mode) <= 3:
            # 2: reverse first, so odd volumes are reversed; 3: forward first, even ones.
            odd = volume % 2 == 1
            reversed_pe = moved = odd if round(mode) == 2 else not odd
    return reversed_pe, moved


def _dimension_index(content: Dataset | None) -> tuple[int, ...]:
    values = content.get("DimensionIndexValues") if content is not None else None
    if values is None:
        return ()
    if not isinstance(values, (list, tuple, pydicom.multival.MultiValue)):
        values = [values]
    return tuple(to_int(v) for v in values)


def _first_float(ds: Dataset, tag: tuple[int, int]) -> float | None:
    values = _private_float(ds, tag)
    return values[0] if values else None


def _private_text(ds: Dataset | None, tag: tuple[int, int]) -> str:
    if ds is None or tag not in ds:
        return ""
    value = ds[tag].value
    if isinstance(value, bytes):
        return value.decode("ascii", "ignore").strip("\x00 ")
    return _text(value).strip()


def _creator(ds: Dataset, group: int, block: int) -> str:
    tag = (group, block)
    return str(ds[tag].value) if tag in ds else ""


def component_of(image_type: list[str], complex_component: str = "", private: str = "") -> str:
    """magnitude/phase/real/imaginary/fieldmap from ImageType (or FrameType), the enhanced
    ComplexImageComponent and a vendor's private component; "" when none says.

    Siemens and GE put ``M``/``P``/``R``/``I`` in the third value, Philips in the third
    (``M_FFE``, ``P_SE``) and fourth; ``PHASE``/``MAGNITUDE`` anywhere; a B0 map says
    ``FIELD_MAP``/``B0 MAP``/``B0``.
    """
    words = [w.upper() for w in image_type]
    tokens = {t for w in words for t in w.replace(" ", "_").split("_")}
    if {"FIELD_MAP", "B0 MAP", "FIELDMAP"} & set(words) or "B0" in words[2:4]:
        return "fieldmap"
    if private.upper() == "B0":
        return "fieldmap"
    letters = {"M": "magnitude", "P": "phase", "R": "real", "I": "imaginary"}
    for word in (private.upper(), *words[2:4]):
        head = word.split("_")[0]
        if head in letters:
            return letters[head]
    for name in ("PHASE", "MAGNITUDE", "REAL", "IMAGINARY"):
        if name in tokens:
            return name.lower()
    value = complex_component.upper()
    if value in ("MAGNITUDE", "PHASE", "REAL", "IMAGINARY"):
        return value.lower()
    return ""


def _seconds(value: Any) -> float | None:
    """A DICOM TM (or the time part of a DT) as seconds since midnight."""
    text = _text(value).strip()
    if len(text) > 14 and text[:8].isdigit():  # DT: YYYYMMDDHHMMSS.frac
        text = text[8:]
    text = text.split("+")[0].split("-")[0]
    try:
        hours = int(text[0:2]) if len(text) >= 2 else 0
        minutes = int(text[2:4]) if len(text) >= 4 else 0
        seconds = float(text[4:]) if len(text) > 4 else 0.0
    except ValueError:
        return None
    return hours * 3600 + minutes * 60 + seconds


def diffusion_of(
    ds: Dataset, item: Dataset | None = None, shared: Dataset | None = None
) -> tuple[float | None, tuple[float, float, float] | None, bool, str]:
    """(b-value, gradient direction in LPS, derived, note) of a file or one enhanced frame.

    The standard's MR Diffusion macro first (per frame, shared, then top level), then the
    vendors' private elements: Philips (2001,1003) and (2005,10B0-10B2), Siemens
    (0019,100C/100E), UIH (0065,1009/1037, the direction along the image axes), GE
    (0043,1039 and its logical-axis directions: :func:`ge_gradient`); Canon / Toshiba
    classic files as :func:`canon_gradient` reads them. A derived image is one the standard
    or Philips marks ISOTROPIC ("I") with b > 0, or a b > 0 image whose direction is given
    as zeros (GE: see :func:`ge_gradient`). The note says why a direction is unknown (or
    how far to trust it); "" otherwise.
    """
    bvalue = None
    gradient = None
    directionality = ""
    sources = [s for s in (item, shared) if s is not None]
    for source in sources:
        diffusion = _first(source, "MRDiffusionSequence")
        if diffusion is None:
            continue
        values = number_list(diffusion, "DiffusionBValue")
        if values:
            bvalue = values[0]
        directionality = str(diffusion.get("DiffusionDirectionality", "") or "").upper()
        direction = _first(diffusion, "DiffusionGradientDirectionSequence")
        vector = number_list(direction, "DiffusionGradientOrientation") if direction else None
        if vector and len(vector) >= 3:
            gradient = (vector[0], vector[1], vector[2])
        break
    if bvalue is None:
        values = number_list(ds, "DiffusionBValue")
        if values:
            bvalue = values[0]
            vector = number_list(ds, "DiffusionGradientOrientation")
            if vector and len(vector) >= 3:
                gradient = (vector[0], vector[1], vector[2])
            directionality = str(ds.get("DiffusionDirectionality", "") or "").upper()
    manufacturer = str(ds.get("Manufacturer", "")).upper()
    private_source = item if item is not None and PHILIPS_BVALUE in item else ds
    if bvalue is None and "PHILIPS" in manufacturer:
        values = _private_float(private_source, PHILIPS_BVALUE)
        if values:
            bvalue = values[0]
            parts = [_private_float(private_source, t) for t in PHILIPS_GRADIENT]
            if all(parts):
                gradient = tuple(p[0] for p in parts)  # type: ignore[assignment,index]
    if "PHILIPS" in manufacturer and not directionality:
        if _private_text(private_source, PHILIPS_DIRECTION).upper() == "I":
            directionality = "ISOTROPIC"
    if bvalue is not None and item is None and shared is None:
        canon = canon_gradient(ds, bvalue, gradient)
        if canon is not None:
            bvalue, gradient, note = canon
            return bvalue, gradient, False, note
    if bvalue is None and "SIEMENS" in manufacturer:
        bvalue, gradient = _private_diffusion(
            ds, SIEMENS_BVALUE, SIEMENS_GRADIENT, SIEMENS_BVALUE, gradient
        )
    if "UIH" in manufacturer.split() and (bvalue is None or UIH_GRADIENT in ds):
        uih_b, uih_g = _private_diffusion(ds, UIH_BVALUE, UIH_GRADIENT, "DiffusionBValue", None)
        if uih_b is not None:
            bvalue = uih_b
        if uih_g is not None:
            # dcm2niix (siemensPhilipsCorrectBvecs, issues 225, 836): UIH's (0065,1037) is
            # along the image's row, column and normal, and comes before (0018,9089).
            gradient = _image_to_patient(ds, uih_g)
    note = ""
    if bvalue is None and "GE" in manufacturer.split():
        text = _private_text(ds, GE_BVALUE)
        try:
            # The first value, less the 10^9 GE adds to it (dcm2niix's reading).
            bvalue = float(text.split("\\")[0]) % 1e9 if text else None
        except ValueError:
            bvalue = None
        if bvalue is not None:
            bvalue, gradient, note, ge_derived = ge_gradient(ds, bvalue)
            return bvalue, gradient, ge_derived, note
    derived = False
    if bvalue is not None and bvalue > 0:
        # A direction of zeros (not an unknown one) with b > 0 is derived.
        no_direction = gradient is not None and float(np.linalg.norm(gradient)) < 1e-6
        derived = directionality == "ISOTROPIC" or (no_direction and directionality != "NONE")
    return bvalue, gradient, derived, note


#: The Siemens software versions dcm2niix treats as XA (its ``isXA10A``: XA10, XA11, XA20,
#: XA30, XA31 in the source; the PyPI v1.0.20260724 also XA5x, XA6x and XA7x, but not
#: XA12, XA21, XA22, XA32, XA40 or XA80: checked on written files).
SIEMENS_XA = re.compile(r"XA(10|11|20|30|31|5\d|6\d|7\d)")


def is_siemens_xa(ds: Dataset) -> bool:
    """Whether dcm2niix takes this Siemens file for XA software (:data:`SIEMENS_XA`)."""
    return "SIEMENS" in str(ds.get("Manufacturer", "")).upper() and bool(
        SIEMENS_XA.search(str(ds.get("SoftwareVersions", "") or "").upper())
    )


def _image_to_patient(
    ds: Dataset, vector: tuple[float, float, float]
) -> tuple[float, float, float]:
    """A vector given along the DICOM row, column and slice normal, in LPS."""
    iop = orientation(ds)
    iop = list(iop[:6]) if iop and len(iop) >= 6 else list(DEFAULT_IOP)
    row = np.asarray(iop[:3], dtype=float)
    col = np.asarray(iop[3:6], dtype=float)
    row, col = row / np.linalg.norm(row), col / np.linalg.norm(col)
    lps = vector[0] * row + vector[1] * col + vector[2] * np.cross(row, col)
    return (float(lps[0]), float(lps[1]), float(lps[2]))


#: Which logical axes dcm2niix's ``geCorrectBvecs`` negates, by the slice orientation
#: (1 sagittal, 2 coronal, 3 axial: the patient axis the slice normal is closest to).
_GE_FLIP = {1: (True, True, False), 2: (False, True, True), 3: (False, False, True)}


def ge_gradient(
    ds: Dataset, bvalue: float
) -> tuple[float, tuple[float, float, float] | None, str, bool]:
    """(b-value, gradient in LPS or None, note, derived) of a GE diffusion image.

    GE gives the direction along the image's logical axes (0019,10BB-10BD), turned into LPS
    by :func:`logical_gradient`. Unknown (None) without those elements. A b > 0 image with a
    zero vector is derived (trace / ADC) when GE's number of directions (0019,10E0) is 0,
    else a b = 0 image (dcm2niix's nii_SaveDTI, issue 245).
    """
    parts = [_private_float(ds, tag) for tag in GE_GRADIENT]
    if not all(parts):
        if bvalue > 0:
            return bvalue, None, "no GE diffusion direction elements (0019,10BB-10BD)", False
        return bvalue, (0.0, 0.0, 0.0), "", False
    v = np.array([p[0] for p in parts], dtype=float)  # type: ignore[index]
    if bvalue > 1.1920929e-07 and float(np.linalg.norm(v)) <= 1.1920929e-07:
        directions = _private_float(ds, GE_DIRECTIONS)
        if directions is not None and directions[0] == 0:
            return bvalue, (0.0, 0.0, 0.0), "", True  # GE trace / ADC
        return 0.0, (0.0, 0.0, 0.0), "", False
    bvalue, gradient, note = logical_gradient(ds, bvalue, v, "GE")
    return bvalue, gradient, note, False


def logical_gradient(
    ds: Dataset, bvalue: float, v: np.ndarray, vendor: str
) -> tuple[float, tuple[float, float, float] | None, str]:
    """(b-value, gradient in LPS or None, note) of a diffusion direction given along the
    image's logical axes (phase, frequency, slice: GE; Canon's classic files).

    dcm2niix's ``geCorrectBvecs`` (console/nii_dicom_batch.cpp) turns it into its
    image-space b-vector: a length between 0.03 and 0.97 scales the b-value by its square
    (rounded to 5 s/mm2, at least 5) and the vector to match; row phase encoding swaps the
    first two components (negating the new second); the components of the axes
    ``_GE_FLIP`` names for the slice orientation are negated, then the second, then all
    three. That vector runs along dcm2niix's voxel axes (the DICOM row direction, the column
    direction reversed, the slice normal; determinant negative, so no FSL flip), which gives
    it in LPS here: the b-vectors are then written as for every other vendor. The PyPI
    dcm2niix (v1.0.20260724) also negates the first two components for coronal slices with
    row phase encoding (checked on written files), and is followed in that. A zero vector
    (or b = 0) is b = 0.

    Unknown (None) where dcm2niix cannot reorient: InPlanePhaseEncodingDirection (0018,1312)
    neither ROW nor COL (dcm2niix then writes the vectors unturned; here no .bvec).
    """
    length = float(np.linalg.norm(v))
    if bvalue <= 1.1920929e-07 or length <= 1.1920929e-07:
        return bvalue, (0.0, 0.0, 0.0), ""
    pe = str(ds.get("InPlanePhaseEncodingDirection", "") or "").upper()
    if pe not in ("ROW", "COL"):
        why = (
            f"{vendor} diffusion directions are given along the phase/frequency axes and"
            " InPlanePhaseEncodingDirection (0018,1312) is neither ROW nor COL"
        )
        return bvalue, None, why
    if 0.03 < length < 0.97:
        scaled = bvalue * length * length  # b scaled by |g|^2 (dcm2niix issues 163, 245)
        rounded = 5.0 if 0 < scaled < 5 else float(int((scaled + 2.5) / 5) * 5)
        v = v * (math.sqrt(bvalue / rounded) if rounded else 0.0)
        bvalue = rounded
    iop = orientation(ds)
    iop = list(iop[:6]) if iop and len(iop) >= 6 else list(DEFAULT_IOP)
    row = np.asarray(iop[:3], dtype=float)
    col = np.asarray(iop[3:6], dtype=float)
    row, col = row / np.linalg.norm(row), col / np.linalg.norm(col)
    normal = np.cross(row, col)
    a = np.abs(normal)
    axis = 3 if a[2] >= a[0] and a[2] >= a[1] else (2 if a[1] >= a[0] else 1)
    x, y, z = v
    if pe == "ROW":
        x, y = y, -x
    flips = _GE_FLIP[axis]
    x, y, z = (-x if flips[0] else x), (-y if flips[1] else y), (-z if flips[2] else z)
    x, y, z = -x, y, -z  # y is negated twice: by dcm2niix's row order, then with the others
    if pe == "ROW" and axis == 2:
        x, y = -x, -y
    lps = x * row - y * col + z * normal
    note = ""
    position = str(ds.get("PatientPosition", "") or "").upper()
    if position and position != "HFS":
        note = (
            f"{vendor} diffusion directions of a {position} (not head first supine)"
            " acquisition: reoriented as for HFS, as dcm2niix does (limited validation)"
        )
    return bvalue, (float(lps[0]), float(lps[1]), float(lps[2])), note


_CANON_COMMENT = re.compile(r"b=(\d+)\(([^)]*)\)")


def canon_gradient(
    ds: Dataset, bvalue: float, world: tuple[float, float, float] | None
) -> tuple[float, tuple[float, float, float] | None, str] | None:
    """(b-value, gradient in LPS or None, note) of a Canon / Toshiba classic (single-frame)
    diffusion image as dcm2niix reads it, or None to keep the standard reading.

    dcm2niix (console/nii_dicom.cpp, issue 388) reads a b > 0 image's direction from
    ImageComments ``b=<b>(x,y,z)`` (the b rounded as the header's), taking (y, x, z) as the
    logical-axis vector and the vendor as Canon; Canon's classic files are image space
    (nii_dicom_batch.cpp's ``geCorrectBvecs``: :func:`logical_gradient`), their
    DiffusionGradientOrientation (0018,9089) too, which comes before the comment (checked
    with the PyPI v1.0.20260724, whose vectors then follow the phase-encoding axis). A
    Toshiba file with (0018,9089) keeps the standard (patient) reading.
    """
    manufacturer = str(ds.get("Manufacturer", "")).upper()
    canon = manufacturer.startswith("CANON")
    if not (canon or manufacturer.startswith("TOSHIBA")) or bvalue <= 0:
        return None
    if world is not None:
        # Canon: (0018,9089) along the logical axes; Toshiba: the standard reading.
        if not canon:
            return None
        return logical_gradient(ds, bvalue, np.asarray(world, dtype=float), "Canon")
    match = _CANON_COMMENT.search(str(ds.get("ImageComments", "") or ""))
    if not match or int(match.group(1)) != round(bvalue):
        return None
    numbers = re.findall(r"-?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?", match.group(2))
    if len(numbers) < 3:
        return None
    x, y, z = (float(n) for n in numbers[:3])
    return logical_gradient(ds, bvalue, np.array([y, x, z]), "Canon")


def _step(ds: Dataset | None) -> float | None:
    for keyword in ("SpacingBetweenSlices", "SliceThickness"):
        values = number_list(ds, keyword)
        if values and values[0] > 0:
            return abs(values[0])
    return None


def _units(item: Dataset | None, shared: Dataset | None) -> str:
    """The physical unit of a frame's values, from its real-world value mapping (the code of
    its MeasurementUnitsCodeSequence) or RescaleType; "" when neither names one."""
    for source in (item, shared):
        if source is None:
            continue
        mapping = _first(source, "RealWorldValueMappingSequence")
        units = _first(mapping, "MeasurementUnitsCodeSequence") if mapping else None
        if units is not None:
            code = str(units.get("CodeValue", "") or "")
            if code.upper() not in NO_UNITS:
                return code
        transform = _first(source, "PixelValueTransformationSequence")
        for holder in (transform, source):
            rescale = str(holder.get("RescaleType", "") or "") if holder is not None else ""
            if rescale and rescale.upper() not in NO_UNITS:
                return rescale
    return ""


def is_mosaic(ds: Dataset) -> bool:
    """A vendor mosaic (several slices tiled in one frame): ImageType contains MOSAIC
    (Siemens) or VFRAME (United Imaging's grid)."""
    image_type = [str(v).upper() for v in (ds.get("ImageType") or [])]
    return "MOSAIC" in image_type or "VFRAME" in image_type


def frames_from_header(ds: Dataset, path: Path) -> list[FrameInfo]:
    """One :class:`FrameInfo` per frame of a header (read with ``stop_before_pixels``)."""
    image_type = [str(v).upper() for v in (ds.get("ImageType") or [])]
    common = dict(
        rows=to_int(ds.get("Rows")),
        columns=to_int(ds.get("Columns")),
        instance=to_int(ds.get("InstanceNumber")),
        acquisition=to_int(ds.get("AcquisitionNumber")),
        localizer="LOCALIZER" in image_type,
        photometric=str(ds.get("PhotometricInterpretation", "MONOCHROME2")),
        samples=to_int(ds.get("SamplesPerPixel", 1)) or 1,
        series_number=to_int(ds.get("SeriesNumber")) + (1000 if ge_pepolar(ds)[1] else 0),
    )
    philips = "PHILIPS" in str(ds.get("Manufacturer", "")).upper()
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if not per_frame:
        bvalue, gradient, derived, note = diffusion_of(ds)
        scale = _private_float(ds, PHILIPS_SCALE_SLOPE) if philips else None
        private_component = _private_text(ds, PHILIPS_COMPONENT) if philips else ""
        if not philips and "GE" in str(ds.get("Manufacturer", "")).upper().split():
            ge = _private_float(ds, GE_COMPONENT) or (
                number_list(ds, GE_COMPONENT) if GE_COMPONENT in ds else None  # type: ignore[arg-type]
            )
            private_component = {0: "M", 1: "P", 2: "R", 3: "I"}.get(int(ge[0]), "") if ge else ""
        extra = dict(
            component=component_of(list(image_type), "", private_component),
            philips_scale=scale[0] if scale and scale[0] != 0 else None,
            units=_units(ds, None),
            bvalue=bvalue,
            gradient=gradient,
            derived_diffusion=derived,
            diffusion_note=note,
            echo_number=to_int(ds.get("EchoNumbers")),
            slice_step=_step(ds),
            acquisition_time=_seconds(ds.get("AcquisitionTime"))
            if ds.get("AcquisitionTime")
            else None,
            time_after_start=_first_float(ds, SIEMENS_TIME_AFTER_START)
            if "SIEMENS" in str(ds.get("Manufacturer", "")).upper()
            else None,
        )
        iop = orientation(ds)
        ipp = number_list(ds, "ImagePositionPatient")
        spacing, source = pixel_spacing(ds)
        n_frames = to_int(ds.get("NumberOfFrames", 1)) or 1
        base = FrameInfo(
            path=path,
            frame=None,
            iop=tuple(iop[:6]) if iop and len(iop) >= 6 else None,
            ipp=tuple(ipp[:3]) if ipp and len(ipp) >= 3 else None,  # type: ignore[arg-type]
            spacing=spacing,
            spacing_source=source,
            echo=_text(ds.get("EchoNumbers")) or _text(ds.get("EchoTime")),
            temporal=to_int(ds.get("TemporalPositionIdentifier")),
            mosaic=is_mosaic(ds),
            slope=(number_list(ds, "RescaleSlope") or [1.0])[0],
            intercept=(number_list(ds, "RescaleIntercept") or [0.0])[0],
            **common,
            **extra,
        )
        if n_frames == 1:
            return [base]
        # A legacy multi-frame file without functional groups (cine, NM, US): every frame
        # shares the one position, so the frames become time points.
        frames = []
        for index in range(n_frames):
            info = FrameInfo(**{**base.__dict__, "frame": index, "temporal": index + 1})
            frames.append(info)
        return frames

    shared = _first(ds, "SharedFunctionalGroupsSequence")
    frames = []
    for index, item in enumerate(per_frame):
        plane = _functional(item, shared, "PlaneOrientationSequence")
        position = _functional(item, shared, "PlanePositionSequence")
        measures = _functional(item, shared, "PixelMeasuresSequence")
        transform = _functional(item, shared, "PixelValueTransformationSequence")
        content = _first(item, "FrameContentSequence")
        echo_item = _functional(item, shared, "MREchoSequence")
        iop = orientation(plane) if plane else None
        ipp = number_list(position, "ImagePositionPatient") if position else None
        private = _first(item, PHILIPS_PRIVATE_FRAME) if philips else None  # type: ignore[arg-type]
        if ipp is None and private is not None:
            ipp = number_list(private, "ImagePositionPatient")  # the only position left
        frame_type = _functional(item, shared, "MRImageFrameTypeSequence")
        kinds = list(frame_type.get("FrameType") or []) if frame_type else []
        complex_part = str(frame_type.get("ComplexImageComponent", "")) if frame_type else ""
        bvalue, gradient, derived, note = diffusion_of(ds, item, shared)
        scale = None
        if philips:
            scale = _private_float(private, PHILIPS_SCALE_SLOPE) or _private_float(
                ds, PHILIPS_SCALE_SLOPE
            )
        acquired = content.get("FrameAcquisitionDateTime") if content else None
        private_component = _private_text(private, PHILIPS_COMPONENT) if philips else ""
        extra = dict(
            component=component_of(
                [str(v) for v in kinds] or list(image_type), complex_part, private_component
            ),
            philips_scale=scale[0] if scale and scale[0] != 0 else None,
            units=_units(item, shared),
            bvalue=bvalue,
            gradient=gradient,
            derived_diffusion=derived,
            diffusion_note=note,
            echo_number=to_int(private.get("EchoNumbers")) if private is not None else 0,
            acquisition_time=_seconds(acquired) if acquired else None,
            enhanced=True,
            dimension_index=_dimension_index(content),
            slice_step=_step(measures) or _step(ds),
        )
        if measures is not None and number_list(measures, "PixelSpacing"):
            spacing, source = pixel_spacing(measures)
        else:
            spacing, source = pixel_spacing(ds)
        frames.append(
            FrameInfo(
                path=path,
                frame=index,
                iop=tuple(iop[:6]) if iop and len(iop) >= 6 else None,
                ipp=tuple(ipp[:3]) if ipp and len(ipp) >= 3 else None,  # type: ignore[arg-type]
                spacing=spacing,
                spacing_source=source,
                echo=_text(echo_item.get("EffectiveEchoTime")) if echo_item else "",
                temporal=to_int(content.get("TemporalPositionIndex")) if content else 0,
                stack=_text(content.get("StackID")) if content else "",
                slope=(number_list(transform, "RescaleSlope") or [1.0])[0],
                intercept=(number_list(transform, "RescaleIntercept") or [0.0])[0],
                **common,
                **extra,
            )
        )
    return frames


def time_order(info: FrameInfo) -> tuple:
    return (info.temporal, info.acquisition, info.instance, info.frame or 0, str(info.path))


def diffusion_table(volume_frames: list[FrameInfo]) -> tuple[np.ndarray, np.ndarray] | None:
    """(b-values, LPS gradient directions) of the volumes, given one frame of each in volume
    order; None when no frame has a b-value (not a diffusion series). A b > 0 volume whose
    direction the header does not give (or that cannot be reoriented) gets NaN."""
    if all(f.bvalue is None for f in volume_frames):
        return None
    bvals = np.array([f.bvalue or 0.0 for f in volume_frames], dtype=float)
    unknown = (float("nan"),) * 3
    vectors = np.array(
        [
            f.gradient or (unknown if (f.bvalue or 0) > 0 else (0.0, 0.0, 0.0))
            for f in volume_frames
        ],
        dtype=float,
    )
    return bvals, vectors


def _private_diffusion(
    ds: Any, bvalue_tag: Any, gradient_tag: Any, fallback: Any, gradient: Any
) -> tuple:
    """A vendor's private b-value and gradient (``gradient`` unchanged where absent);
    ``fallback`` is read as a plain number list when the private value has no usable VR."""
    values = _private_float(ds, bvalue_tag)
    if values is None and bvalue_tag in ds:
        values = number_list(ds, fallback)  # type: ignore[arg-type]
    if not values:
        return None, gradient
    vector = _private_float(ds, gradient_tag, 3)
    if vector and len(vector) >= 3:
        gradient = (vector[0], vector[1], vector[2])
    return values[0], gradient
