"""The header pass of DICOM ingest: one :class:`Entry` per usable file, the others quarantined.

Headers are read from regular files only, with the declared pixel size checked against the
bytes present and ``ingest.limits.max_pixel_bytes`` before anything is decoded, so a hostile
header costs a header read. Identifiers stay in memory (to group and to scrub), never written.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from pydicom.datadict import tag_for_keyword

from medcnn.ingest.context import Context, Entry
from medcnn.ingest.discovery import Candidate, identify
from medcnn.io.deid import (
    IDENTIFYING_KEYWORDS,
    REPLACED_UID_KEYWORDS,
    date_shift_days,
    keyed_uid,
    pseudonym,
    shift_date,
)
from medcnn.io.dicom import PROJECTION_MODALITIES, read_header
from medcnn.io.dicom_frames import (
    GE_BVALUE,
    GE_COMPONENT,
    GE_DIRECTIONS,
    GE_GRADIENT,
    GE_PULSE_SEQUENCE,
    GE_USER_DATA12,
    PHILIPS_BVALUE,
    PHILIPS_COMPONENT,
    PHILIPS_DIRECTION,
    PHILIPS_GRADIENT,
    PHILIPS_SCALE_SLOPE,
    SIEMENS_BVALUE,
    SIEMENS_GRADIENT,
    SIEMENS_TIME_AFTER_START,
    UIH_BVALUE,
    UIH_GRADIENT,
    is_siemens_xa,
)
from medcnn.io.dicom_series import frames_from_header
from medcnn.io.scrub import FREE_TEXT_KEYWORDS, free_text

STAGE = "header"

#: Every top-level element the header pass reads (:func:`read_entry`, the size check of
#: :func:`medcnn.io.limits.check_dicom_size`, :func:`medcnn.io.dicom_frames.frames_from_header`
#: and what it calls), by keyword: a plain file's header is read for these alone
#: (:mod:`medcnn.io.dicom_scan`), its other elements skipped unparsed. A sequence listed is
#: read whole. ``tests/ingest/test_header_scan.py`` fails when one of those modules names a
#: keyword that is not here.
HEADER_KEYWORDS = (
    # identity, grouping, size check (read_entry, check_dicom_size)
    "SOPClassUID",
    "SOPInstanceUID",
    "Modality",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SeriesDescription",
    "StudyDate",
    "SeriesDate",
    "AcquisitionDate",
    "AcquisitionDateTime",
    "ContentDate",
    "FrameOfReferenceUID",
    "InstanceNumber",
    "BurnedInAnnotation",
    "Rows",
    "Columns",
    "NumberOfFrames",
    "SamplesPerPixel",
    "BitsAllocated",
    "BitsStored",
    "PixelRepresentation",
    *IDENTIFYING_KEYWORDS,
    # frames (frames_from_header and its helpers)
    "Manufacturer",
    "ManufacturerModelName",
    "ImageType",
    "AcquisitionNumber",
    "AcquisitionTime",
    "PhotometricInterpretation",
    "SeriesNumber",
    "EchoNumbers",
    "EchoTime",
    "TemporalPositionIdentifier",
    "ImageOrientationPatient",
    "ImagePositionPatient",
    "PixelSpacing",
    "ImagerPixelSpacing",
    "NominalScannedPixelSpacing",
    "SliceThickness",
    "SpacingBetweenSlices",
    "RescaleSlope",
    "RescaleIntercept",
    "RescaleType",
    "WindowCenter",
    "WindowWidth",
    "PatientSex",
    "BodyPartExamined",
    "ViewPosition",
    "DiffusionBValue",
    "DiffusionDirectionality",
    "DiffusionGradientOrientation",
    "InPlanePhaseEncodingDirection",
    "PatientPosition",
    "ImageComments",
    "MRDiffusionSequence",
    "RealWorldValueMappingSequence",
    "PixelValueTransformationSequence",
    "PerFrameFunctionalGroupsSequence",
    "SharedFunctionalGroupsSequence",
    # read inside the sequences above; listed too, should a file hold one at the top level
    "DiffusionGradientDirectionSequence",
    "MeasurementUnitsCodeSequence",
    "CodeValue",
    "PlaneOrientationSequence",
    "PlanePositionSequence",
    "PixelMeasuresSequence",
    "FrameContentSequence",
    "FrameAcquisitionDateTime",
    "DimensionIndexValues",
    # Siemens XA classic files stacked by SeriesTime (stacked_series_key)
    "SoftwareVersions",
    "SeriesTime",
    "TemporalPositionIndex",
    "StackID",
    "MREchoSequence",
    "EffectiveEchoTime",
    "MRImageFrameTypeSequence",
    "FrameType",
    "ComplexImageComponent",
)
#: The private elements the header pass reads at the top level (:mod:`medcnn.io.dicom_frames`),
#: with every private creator of their groups (a private element's VR is looked up through
#: its creator). Philips' private frame sequence (2005,140F) is read only inside the items of
#: PerFrameFunctionalGroupsSequence (read whole): a classic Philips file's own one (~80
#: elements) is skipped.
HEADER_PRIVATE_TAGS = (
    PHILIPS_SCALE_SLOPE,
    PHILIPS_BVALUE,
    PHILIPS_DIRECTION,
    *PHILIPS_GRADIENT,
    PHILIPS_COMPONENT,
    SIEMENS_BVALUE,
    SIEMENS_GRADIENT,
    SIEMENS_TIME_AFTER_START,
    GE_BVALUE,
    GE_COMPONENT,
    GE_DIRECTIONS,
    *GE_GRADIENT,
    GE_PULSE_SEQUENCE,
    GE_USER_DATA12,
    UIH_BVALUE,
    UIH_GRADIENT,
)


@lru_cache(maxsize=8)
def header_tags(label_key: str | None = None) -> frozenset[int] | None:
    """The tags of :data:`HEADER_KEYWORDS` and :data:`HEADER_PRIVATE_TAGS` (with their
    groups' private creators), and the labels' key keyword when given; None (read every
    element) when that key is not a DICOM keyword."""
    if label_key and tag_for_keyword(label_key) is None:
        return None
    keywords = [*HEADER_KEYWORDS, *([label_key] if label_key else [])]
    tags = {tag_for_keyword(k) for k in keywords}
    for group, element in HEADER_PRIVATE_TAGS:
        tags.add(group << 16 | element)  # type: ignore[arg-type]
        tags.update(group << 16 | creator for creator in range(0x10, 0x100))
    return frozenset(tags)


def read_entry(
    cand: Candidate,
    ctx: Context,
    seen_sop: dict[str, Path],
    tables: dict[Path, dict[str, dict[str, str]]],
) -> Entry | None:
    """Header pass of one DICOM file; None (and a quarantine row) when it cannot be used."""
    key_keyword = ctx.config["labels"]["key"] if ctx.labels else None
    ds = read_header(cand.path, ctx.limits, header_tags(key_keyword))
    # Each identifying element read once (as text), for the scrub list and the sidecar.
    present = {k: v for k, v in ((k, ds.get(k)) for k in IDENTIFYING_KEYWORDS) if v}
    identifiers = {k: str(v) for k, v in present.items()}
    phi = tuple(identifiers.values())
    ctx.phi.update(phi)
    sop = str(ds.get("SOPInstanceUID", ""))
    if sop and sop in seen_sop:
        ctx.reject(cand.path, STAGE, f"duplicate SOPInstanceUID of {ctx.shown(seen_sop[sop])}")
        return None
    seen_sop[sop] = cand.path
    patient_id = str(ds.get("PatientID", "") or "").strip()
    source = "PatientID"
    if not patient_id and cand.spec is not None and (cand.spec.pattern or cand.spec.table):
        # An anonymised export without PatientID: the folder layout can still say who it is.
        try:
            patient_id = identify(cand, tables)["subject"]
            source = "folder layout"
        except ValueError:
            patient_id = ""
    if not ds.get("SeriesInstanceUID"):
        ctx.reject(cand.path, STAGE, "missing SeriesInstanceUID")
        return None
    study_uid = str(ds.get("StudyInstanceUID", "") or "")
    if not patient_id:
        patient_id, source = fallback_patient(study_uid, str(ds.SeriesInstanceUID))
    if not ds.get("Rows"):
        sop_class = ds.get("SOPClassUID")
        name = getattr(sop_class, "name", None) or str(sop_class or "unknown SOP class")
        ctx.reject(cand.path, STAGE, f"no pixel data ({name})")
        return None
    burned = str(ds.get("BurnedInAnnotation", "")).upper() == "YES"
    if burned and ctx.config["ingest"]["burned_in"] == "quarantine":
        ctx.reject(cand.path, STAGE, "BurnedInAnnotation YES (ingest.burned_in: quarantine)")
        return None
    frames = frames_from_header(ds, cand.path)
    series_uid = str(ds.SeriesInstanceUID)
    stacked = stacked_series_key(ds, frames)
    if stacked is not None:
        for frame in frames:
            frame.source_series_uid = series_uid
            frame.series_number = 0  # dcm2niix stacks them whatever their SeriesNumber
        series_uid = stacked
    dates = {k: str(ds.get(k)) for k in ("StudyDate", "AcquisitionDate") if ds.get(k)}
    if ds.get("AcquisitionDateTime"):
        dates["AcquisitionDateTime"] = str(ds.AcquisitionDateTime)
    try:
        instance = int(ds.get("InstanceNumber", 0) or 0)
    except (TypeError, ValueError):
        instance = 0
    key_keyword = ctx.config["labels"]["key"]
    return Entry(
        path=cand.path,
        modality=str(ds.get("Modality", "OT")) or "OT",
        patient_id=patient_id,
        patient_source=source,
        study_uid=study_uid or str(ds.SeriesInstanceUID),
        series_uid=series_uid,
        sop_uid=sop,
        instance=instance,
        key_value=str(ds.get(key_keyword, "")) if ctx.labels else None,
        description=str(ds.get("SeriesDescription", "") or ""),
        frames=frames,
        dates=dates,
        identifiers=identifiers if ctx.config["deid"]["keep_identifiers"] else {},
        phi=phi,
        syntax=str(getattr(ds, "file_meta", {}).get("TransferSyntaxUID", "")),
    )


def stacked_series_key(ds: Any, frames: list[Any]) -> str | None:
    """The key a Siemens XA classic (interoperability) file is grouped by instead of its
    SeriesInstanceUID, or None for every other file.

    XA systems saving classic single-frame DICOM give each volume of a series its own
    SeriesInstanceUID; dcm2niix (console/nii_dicom.cpp, issue 394: Siemens, XA software as
    :func:`medcnn.io.dicom_frames.is_siemens_xa` tells it, one frame, a SeriesTime) groups
    such files by their SeriesTime instead, and so does this (within the study: the key is
    the StudyInstanceUID and the SeriesTime), across SeriesNumbers too (dcm2niix orders the
    volumes by them; the sidecar has the first volume's). The file's own UID stays with its
    frames (``source_series_uid``) for the sidecar.
    """
    if not is_siemens_xa(ds):
        return None
    series_time = str(ds.get("SeriesTime", "") or "").strip()
    if not series_time or len(frames) != 1 or frames[0].frame is not None:
        return None
    return f"{ds.get('StudyInstanceUID', '')}/XA-SeriesTime/{series_time}"


def is_projection(members: list[Entry]) -> bool:
    """Radiographs: one 2D greyscale image per file, each written on its own."""
    return members[0].modality in PROJECTION_MODALITIES and all(
        len(e.frames) == 1 and e.frames[0].frame is None and not e.frames[0].colour for e in members
    )


#: The identifiers a subject falls back on when PatientID is empty or absent (and the
#: input's folder layout does not name one), in order: the study, then the series. Each
#: such series becomes its own subject (a study is never split between subjects), and its
#: sidecar says which fallback was used (``SubjectSource``), never the value.
PATIENT_FALLBACKS = ("StudyInstanceUID", "SeriesInstanceUID")


def fallback_patient(study_uid: str, series_uid: str) -> tuple[str, str]:
    """(the value a subject's pseudonym is keyed on, its source) for a file without
    PatientID; the source is prefixed so a fallback never collides with a real PatientID."""
    for keyword, value in zip(PATIENT_FALLBACKS, (study_uid, series_uid), strict=True):
        if value:
            return f"{keyword}:{value}", keyword
    raise AssertionError("SeriesInstanceUID is checked before")  # pragma: no cover


def subject_ids(entry: Entry, ctx: Context) -> tuple[str, str]:
    """(subject, study) pseudonyms of an entry, recorded in the mapping (the mapping names
    the fallback used when PatientID was empty: :data:`PATIENT_FALLBACKS`)."""
    subject = pseudonym(entry.patient_id, ctx.secret, "sub-")
    study = pseudonym(entry.study_uid, ctx.secret, "ses-", 8)
    if entry.patient_source in PATIENT_FALLBACKS:
        value = entry.patient_id.split(":", 1)[1]
        ctx.mapping.append((subject, f"{entry.patient_source} (no PatientID)", value))
    else:
        ctx.mapping.append((subject, "PatientID", entry.patient_id))
    ctx.mapping.append((study, "StudyInstanceUID", entry.study_uid))
    return subject, study


def date_fields(entry: Entry, ctx: Context) -> dict[str, str]:
    """Dates for the sidecar per ``deid.dates`` (none, or shifted per subject)."""
    if ctx.config["deid"]["dates"] != "shift":
        return {}
    days = date_shift_days(entry.patient_id, ctx.secret, ctx.config["deid"]["max_shift_days"])
    out: dict[str, str] = {}
    if "StudyDate" in entry.dates:
        shifted = shift_date(entry.dates["StudyDate"], days)
        if shifted:
            out["StudyDate"] = shifted
    acquired = entry.dates.get("AcquisitionDateTime") or entry.dates.get("AcquisitionDate")
    if acquired:
        shifted = shift_date(acquired, days)
        if shifted:
            # Only the (shifted) day: a time of day next to a date narrows it down again.
            out["AcquisitionDateTime"] = shifted
    return out


def deidentify_sidecar(sidecar: dict[str, Any], entry: Entry, ctx: Context) -> dict[str, Any]:
    """The sidecar with free text per ``deid.free_text`` and UIDs per ``deid.uids``.

    Under ``replace`` every Study/Series/SOP/FrameOfReference UID (and each slice's SOP
    instance UID) becomes its keyed UID: the same in every run with the same key, so DICOM
    SEG outputs made from the sidecar reference the replaced ones consistently.
    """
    out = dict(sidecar)
    policy = ctx.config["deid"]["free_text"]
    for keyword in FREE_TEXT_KEYWORDS:
        if keyword in out:
            text = free_text(str(out[keyword]), entry.phi, policy)
            if text:
                out[keyword] = text
            else:
                del out[keyword]
    if ctx.config["deid"]["uids"] == "replace":
        for keyword in REPLACED_UID_KEYWORDS:
            if out.get(keyword):
                out[keyword] = keyed_uid(str(out[keyword]), ctx.secret)
        if "SliceSOPInstanceUIDs" in out:
            out["SliceSOPInstanceUIDs"] = [
                keyed_uid(str(u), ctx.secret) for u in out["SliceSOPInstanceUIDs"]
            ]
    return out
