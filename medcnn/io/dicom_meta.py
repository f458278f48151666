"""Non-identifying acquisition facts of a DICOM header for the sidecar, and compact storage."""

from __future__ import annotations

import struct
import warnings
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from medcnn.io.dicom import number_list
from medcnn.io.dicom_frames import ge_pepolar, to_int


def compact(data: np.ndarray) -> np.ndarray:
    """The smallest exact storage type: int16/uint16 for whole numbers in range, else float32."""
    if data.dtype == np.uint8:
        return data
    if np.issubdtype(data.dtype, np.integer) and data.size:
        # Already whole numbers (stacked in their storage type): narrow it if it can be.
        lo, hi = int(data.min()), int(data.max())
        for dtype in (np.int16, np.uint16, np.int32):
            info = np.iinfo(dtype)
            if info.min <= lo and hi <= info.max:
                return data.astype(dtype, copy=False)
        return data.astype(np.float32)
    if data.size and np.all(np.isfinite(data)) and np.array_equal(data, np.round(data)):
        lo, hi = float(data.min()), float(data.max())
        for dtype in (np.int16, np.uint16, np.int32):
            info = np.iinfo(dtype)
            if info.min <= lo and hi <= info.max:
                return data.astype(dtype)
    return data.astype(np.float32)


#: (DICOM keyword, sidecar key, factor): acquisition facts copied to the sidecar. Times in
#: DICOM are ms; BIDS wants seconds. Nothing here identifies a patient.
_ACQUISITION_FIELDS = (
    ("Modality", "Modality", None),
    ("Manufacturer", "Manufacturer", None),
    ("ManufacturerModelName", "ManufacturersModelName", None),
    ("MagneticFieldStrength", "MagneticFieldStrength", 1.0),
    ("BodyPartExamined", "BodyPartExamined", None),
    ("PatientPosition", "PatientPosition", None),
    ("SeriesDescription", "SeriesDescription", None),
    ("ProtocolName", "ProtocolName", None),
    ("SeriesNumber", "SeriesNumber", None),
    ("ScanningSequence", "ScanningSequence", None),
    ("SequenceVariant", "SequenceVariant", None),
    ("MRAcquisitionType", "MRAcquisitionType", None),
    ("SliceThickness", "SliceThickness", 1.0),
    ("SpacingBetweenSlices", "SpacingBetweenSlices", 1.0),
    ("EchoTime", "EchoTime", 0.001),
    ("RepetitionTime", "RepetitionTime", 0.001),
    ("InversionTime", "InversionTime", 0.001),
    ("FlipAngle", "FlipAngle", 1.0),
    ("KVP", "KVP", 1.0),
    ("ConvolutionKernel", "ConvolutionKernel", None),
    ("GantryDetectorTilt", "GantryDetectorTilt", 1.0),
    ("ImageType", "ImageType", None),
    ("BitsStored", "BitsStored", None),
    ("RescaleSlope", "RescaleSlope", 1.0),
    ("RescaleIntercept", "RescaleIntercept", 1.0),
    ("WindowCenter", "WindowCenter", 1.0),
    ("WindowWidth", "WindowWidth", 1.0),
    ("VOILUTFunction", "VOILUTFunction", None),
    ("BurnedInAnnotation", "BurnedInAnnotation", None),
    ("SOPClassUID", "SOPClassUID", None),
)


def acquisition_meta(ds: Dataset) -> dict[str, Any]:
    """BIDS-like, non-identifying acquisition facts of a dataset (units: s, mm, degrees, T)."""
    meta: dict[str, Any] = {}
    for keyword, key, factor in _ACQUISITION_FIELDS:
        value = ds.get(keyword)
        if value is None or value == "":
            continue
        if factor is not None:
            numbers = number_list(ds, keyword) or []
            if not numbers:
                continue  # text in a numeric attribute: left out, never fatal
            meta[key] = [v * factor for v in numbers] if len(numbers) > 1 else numbers[0] * factor
        elif isinstance(value, (list, tuple, pydicom.multival.MultiValue)):
            meta[key] = [str(v) for v in value]
        elif isinstance(value, int):
            meta[key] = int(value)
        else:
            meta[key] = str(value)
    reversed_pe, moved = ge_pepolar(ds)
    if "SeriesNumber" in meta:
        meta["SeriesNumber"] = to_int(meta["SeriesNumber"]) + (1000 if moved else 0)
    if "ImageType" in meta:
        # dcm2niix's form: the values split at "\\" and "_" (Philips' M_SE is M, SE).
        meta["ImageType"] = [t for v in meta["ImageType"] for t in str(v).split("_") if t]
    echo = number_list(ds, "EchoNumbers")
    if echo:
        meta["EchoNumber"] = int(echo[0])
    direction = str(ds.get("InPlanePhaseEncodingDirection", "") or "").upper()
    if not direction:
        shared = ds.get("SharedFunctionalGroupsSequence")
        fov = shared[0].get("MRFOVGeometrySequence") if shared else None
        direction = (
            str(fov[0].get("InPlanePhaseEncodingDirection", "") or "").upper() if fov else ""
        )
    direction = {"COLUMN": "COL"}.get(direction, direction)  # the enhanced macro's spelling
    if direction in ("ROW", "COL"):
        # NIfTI i runs along a row (the column index), j down a column: phase encoding
        # along the columns (COL) is the j axis, as dcm2niix writes it (no polarity: the
        # header does not say it).
        meta["InPlanePhaseEncodingDirectionDICOM"] = direction
        meta["PhaseEncodingAxis"] = "j" if direction == "COL" else "i"
    if "VOILUTSequence" in ds:
        meta["VOILUTSequence"] = True
    siemens = siemens_csa(ds)
    positive = siemens.get("PhaseEncodingDirectionPositive")
    polarity = ge_phase_polarity(ds)
    uih = uih_phase_flipped(ds)
    if uih is not None:
        positive = int(not uih)
    if polarity is not None and reversed_pe:
        # epi_pepolar: this volume is phase-encoded the other way (dcm2niix inverts it).
        polarity = "Unflipped" if polarity == "Flipped" else "Flipped"
    if polarity is not None:
        meta["PhaseEncodingPolarityGE"] = polarity
        # dcm2niix: GE's "unflipped" is PhaseEncodingDirectionPositive 1, "flipped" 0.
        positive = int(polarity == "Unflipped")
    if positive is not None and "PhaseEncodingAxis" in meta:
        # Polarity along our voxel axes (rows are not flipped here, unlike dcm2niix's
        # layout, whose "j-" is our "j"): positive means along the DICOM row/column.
        meta["PhaseEncodingDirection"] = meta["PhaseEncodingAxis"] + ("" if positive == 1 else "-")
    file_meta = getattr(ds, "file_meta", None)
    syntax = file_meta.get("TransferSyntaxUID", "") if file_meta is not None else ""
    meta["TransferSyntaxUID"] = str(syntax)
    return meta


#: UIH's phase-encoding polarity (0065,1058): 1 flipped, 0 not (dcm2niix's reading).
UIH_PHASE_POLARITY = (0x0065, 0x1058)


def uih_phase_flipped(ds: Dataset) -> bool | None:
    """Whether a UIH image's phase encoding runs against the DICOM row/column (0065,1058)
    = 1, as dcm2niix reads it (``kPhaseEncodingDirectionPositiveUIH``: 1 is flipped, the
    opposite of Siemens' flag; checked with the PyPI v1.0.20260724); None when absent."""
    if "UIH" not in str(ds.get("Manufacturer", "")).upper().split() or UIH_PHASE_POLARITY not in ds:
        return None
    value = ds[UIH_PHASE_POLARITY].value
    if isinstance(value, bytes):
        value = value.decode("ascii", "ignore").strip("\x00 ")
    try:
        flag = int(str(value).split("\\")[0].strip())
    except ValueError:
        return None
    return {0: False, 1: True}.get(flag)


#: GE's user data block (0043,102A), which holds the EPI phase-encoding flags.
GE_USER_DATA = (0x0043, 0x102A)


def ge_phase_polarity(ds: Dataset) -> str | None:
    """GE's phase-encoding polarity, ``Flipped`` or ``Unflipped``, as dcm2niix reads it
    (console/nii_dicom.cpp, ``kRectilinearPhaseEncodeReordering`` then ``kUserDefineDataGE``);
    None when the header does not say.

    RectilinearPhaseEncodeReordering (0018,9034) comes first (dcm2niix issue 674): LINEAR is
    flipped, REVERSE_* unflipped (others say nothing). Otherwise the binary user data block
    (0043,102A), little endian: the header offset at byte 24 (uint16), a float32 version
    there (5 to 40; from 25.002 on the fields sit 0x4c bytes further and the ky direction
    0x8c bytes nearer); only an EPI (bit 0x800 of the uint16 at +0x3a) says anything: bit 4
    of the uint16 at +0x30 set means flipped, and a bottom-up ky direction (2, uint16 at
    +0x394) inverts it. The block must hold at least 916 bytes past its header offset.
    """
    if "GE" not in str(ds.get("Manufacturer", "")).upper().split():
        return None
    reordering = str(ds.get("RectilinearPhaseEncodeReordering", "") or "").upper()
    if reordering.startswith("REVERSE"):
        return "Unflipped"
    if reordering == "LINEAR":
        return "Flipped"
    if GE_USER_DATA not in ds:
        return None
    try:
        raw = bytes(ds[GE_USER_DATA].value)
        if len(raw) < 916:
            return None
        offset = struct.unpack_from("<H", raw, 24)[0]
        if len(raw) < offset + 916:
            return None
        version = struct.unpack_from("<f", raw, offset)[0]
        if not 5.0 <= version <= 40.0:
            return None
        base, ky = offset, 0x0394
        if version >= 25.002:
            base += 0x004C
            ky -= 0x008C
        epi = struct.unpack_from("<H", raw, base + 0x3A)[0] & 0x800
        if not epi:
            return None
        flipped = bool(struct.unpack_from("<H", raw, base + 0x30)[0] & 0x0004)
        if struct.unpack_from("<H", raw, base + ky)[0] == 2:  # bottom-up ky
            flipped = not flipped
    except (TypeError, ValueError, struct.error):
        return None
    return "Flipped" if flipped else "Unflipped"


def siemens_csa(ds: Dataset) -> dict[str, Any]:
    """A few values of a Siemens CSA image header (0029,xx10): PhaseEncodingDirectionPositive
    (0/1) and MosaicRefAcqTimes (ms, per stored slice); {} when absent or unreadable."""
    if "SIEMENS" not in str(ds.get("Manufacturer", "")).upper():
        return {}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # nibabel: "DICOM readers are experimental"
            from nibabel.nicom import csareader

            csa = csareader.get_csa_header(ds, "image")
    except Exception:  # noqa: BLE001 - a damaged CSA header is only a missing fact
        return {}
    if not csa:
        return {}
    out: dict[str, Any] = {}
    tags = csa.get("tags", {})
    items = tags.get("PhaseEncodingDirectionPositive", {}).get("items") or []
    if items:
        try:
            out["PhaseEncodingDirectionPositive"] = int(items[0])
        except (TypeError, ValueError):
            pass
    times = tags.get("MosaicRefAcqTimes", {}).get("items") or []
    try:
        out["MosaicRefAcqTimes"] = [float(t) for t in times] or None
    except (TypeError, ValueError):
        pass
    return out


def _functional(ds: Dataset, frame: int, sequence: str) -> Dataset | None:
    for groups, index in (
        ("PerFrameFunctionalGroupsSequence", frame),
        ("SharedFunctionalGroupsSequence", 0),
    ):
        seq = ds.get(groups)
        if seq and len(seq) > index:
            inner = seq[index].get(sequence)
            if inner:
                return inner[0]
    return None


def enhanced_meta(ds: Dataset, frame: int) -> dict[str, Any]:
    """EchoTime, RepetitionTime, FlipAngle (s, degrees) and EchoNumber of one frame of an
    enhanced file, from its functional groups (the top level of such files has none)."""
    meta: dict[str, Any] = {}
    echo = _functional(ds, frame, "MREchoSequence")
    values = number_list(echo, "EffectiveEchoTime") if echo is not None else None
    if values:
        meta["EchoTime"] = values[0] * 0.001
    timing = _functional(ds, frame, "MRTimingAndRelatedParametersSequence")
    for keyword, factor in (("RepetitionTime", 0.001), ("FlipAngle", 1.0)):
        values = number_list(timing, keyword) if timing is not None else None
        if values:
            meta[keyword] = values[0] * factor
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    own = per_frame[frame] if per_frame and len(per_frame) > frame else None
    siemens = own.get((0x0021, 0x11FE)) if own is not None else None
    if siemens and "SIEMENS" in str(ds.get("Manufacturer", "")).upper():
        # Siemens XA: PhaseEncodingDirectionPositive (0021,111C) in the frame's SDI group.
        tag = (0x0021, 0x111C)
        try:
            if tag in siemens[0]:
                meta["PhaseEncodingDirectionPositive"] = int(siemens[0][tag].value)
        except (TypeError, ValueError):
            pass
    private = own.get((0x2005, 0x140F)) if own is not None else None
    if private:
        item = private[0]
        for keyword, key, factor in (
            ("EchoNumbers", "EchoNumber", None),
            ("EchoTime", "EchoTime", 0.001),
            ("RepetitionTime", "RepetitionTime", 0.001),
            ("FlipAngle", "FlipAngle", 1.0),
        ):
            values = number_list(item, keyword)
            if values and key not in meta:
                meta[key] = int(values[0]) if factor is None else values[0] * factor
    return meta
