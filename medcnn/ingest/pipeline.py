"""Ingest: input folders -> de-identified NIfTI + sidecars, ``manifest.tsv``, ``quarantine.tsv``.

Two passes: headers first (cheap, to group images into patients, studies and series, and to
split series into volumes), then pixel data one series at a time, so memory stays flat however
large the cohort. A file that fails either pass is quarantined with its reason and the batch
goes on. Nothing is ever written below the input folders.

Outputs per image or volume: ``results/ingest/{subject}/{series}.nii.gz`` (qform = sform,
code 1) and ``{series}.json`` (BIDS-like, de-identified). Both are rewritten only when the
sidecar changes, so Snakemake re-runs downstream jobs for new or changed scans only.

Labels for segmentation come in three ways, each recorded in the manifest's ``role`` column:
DICOM series whose SeriesDescription matches ``ingest.label_series`` and files matching an
input's ``masks`` pattern are label maps (``mask``); files matching an input's ``instances``
pattern (one binary mask per object, as in the 2018 Data Science Bowl) are merged per subject
and study into one instance label map (``instances``, ids 1..N in path order). Labels are
stored as integers (never interpolated) and converted after the images, so that a label whose
grid matches no image of its subject and study is quarantined instead of written.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medcnn import __version__
from medcnn.ingest.batches import write_batches
from medcnn.ingest.discovery import (
    Candidate,
    discover,
    identify,
    load_subject_table,
    parse_inputs,
)
from medcnn.ingest.grouping import describe_split, split_series
from medcnn.ingest.manifest import write_manifest, write_quarantine
from medcnn.io.deid import (
    IDENTIFYING_KEYWORDS,
    date_shift_days,
    pseudonym,
    resolve_secret,
    shift_date,
    write_mapping,
)
from medcnn.io.dicom import (
    PROJECTION_MODALITIES,
    DicomImage,
    DicomReadError,
    read_header,
    read_image,
)
from medcnn.io.dicom_series import (
    AssemblyOptions,
    FrameInfo,
    assemble_series,
    frames_by_position,
    frames_from_header,
)
from medcnn.io.files import sha256_file
from medcnn.io.image2d import read_image_file
from medcnn.io.nifti import jsonable, read_nifti, write_json, write_nifti

log = logging.getLogger(__name__)


@dataclass
class _Entry:
    """One DICOM file after the header pass (identifiers kept in memory only)."""

    path: Path
    shown: str
    modality: str
    patient_id: str
    study_uid: str
    series_uid: str
    sop_uid: str
    instance: int
    key_value: str | None
    description: str = ""
    frames: list[FrameInfo] = field(default_factory=list)
    dates: dict[str, str] = field(default_factory=dict)
    identifiers: dict[str, str] = field(default_factory=dict)


@dataclass
class _Context:
    """What every conversion needs: settings, the key, and the running outputs."""

    config: dict[str, Any]
    results: Path
    out: Path
    secret: bytes
    options: AssemblyOptions
    labels: dict[str, dict[str, str]]
    rows: list[dict[str, Any]] = field(default_factory=list)
    #: (subject, study) -> [(spatial shape, affine)] of the images written, to check labels.
    grids: dict[tuple[str, str], list[tuple[tuple[int, ...], np.ndarray]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    quarantine: list[tuple[str, str]] = field(default_factory=list)
    mapping: list[tuple[str, str, str]] = field(default_factory=list)

    def reject(self, shown: str, reason: str) -> None:
        self.quarantine.append((shown, reason))
        log.warning("quarantined %s: %s", shown, reason)


def load_labels(path: Path, column: str, columns: list[str]) -> dict[str, dict[str, str]]:
    """Read a labels table (CSV, or TSV by extension) into ``{key value: {label: value}}``.

    Raises:
        ValueError: the key column or a label column is missing, or a key repeats.
    """
    sep = "\t" if path.suffix.lower() in (".tsv", ".tab") else ","
    table = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False)
    missing = [c for c in [column, *columns] if c not in table.columns]
    if missing:
        raise ValueError(f"{path}: labels table lacks columns {missing}")
    dupes = table[column][table[column].duplicated()].unique()
    if len(dupes):
        # The key values may be identifiers themselves: report how many, not which.
        raise ValueError(f"{path}: {len(dupes)} key value(s) of column {column!r} repeat")
    return {row[column]: {c: row[c] for c in columns} for _, row in table.iterrows()}


def _relative(path: Path, folders: list[Path]) -> str:
    for folder in folders:
        try:
            return str(folder.name / path.relative_to(folder))
        except ValueError:
            continue
    return str(path)


def run_ingest(config: dict[str, Any]) -> tuple[int, int]:
    """Convert every image below ``config['inputs']`` and write the manifest.

    Args:
        config: the validated workflow configuration (defaults filled in).

    Returns:
        (images or volumes written to the manifest, files quarantined).
    """
    results = Path(config["results"])
    specs = parse_inputs(config["inputs"])
    folders = [s.path for s in specs]
    label_cfg = config["labels"]
    labels: dict[str, dict[str, str]] = {}
    if label_cfg["path"]:
        labels = load_labels(Path(label_cfg["path"]), label_cfg["column"], label_cfg["columns"])
    ctx = _Context(
        config=config,
        results=results,
        out=results / "ingest",
        secret=resolve_secret(config["deid"]["secret"]),
        options=AssemblyOptions(uneven_spacing=config["ingest"]["uneven_spacing"]),
        labels=labels,
    )
    tables = {s.table: load_subject_table(s.table) for s in specs if s.table is not None}

    entries: list[_Entry] = []
    others: list[tuple[Candidate, str]] = []
    seen_sop: dict[str, Path] = {}
    n_skipped = 0
    for cand in discover(specs, config["ingest"]["min_bytes"]):
        shown = _relative(cand.path, folders)
        if cand.kind in ("nifti", "image"):
            others.append((cand, shown))
        elif cand.kind == "dicom":
            entry = _read_entry(cand, shown, ctx, seen_sop, folders, tables)
            if entry is not None:
                entries.append(entry)
        else:
            n_skipped += 1
            log.info("skipped (not a scan file): %s", shown)

    by_series: dict[tuple[str, str, str], list[_Entry]] = defaultdict(list)
    for entry in entries:
        by_series[(entry.patient_id, entry.study_uid, entry.series_uid)].append(entry)
    label_series = re.compile(config["ingest"].get("label_series") or r"(?!)")
    ordered = sorted(by_series.values(), key=lambda members: members[0].sop_uid)
    label_groups = []
    for members in ordered:
        members.sort(key=lambda e: (e.instance, e.sop_uid))
        if members[0].description and label_series.search(members[0].description):
            label_groups.append(members)  # after the images, to check their grid
        elif _is_projection(members):
            _convert_projections(members, ctx)
        else:
            _convert_volumes(members, ctx)
    for members in label_groups:
        _convert_volumes(members, ctx, role="mask")
    by_role: dict[str, list[tuple[Candidate, str]]] = defaultdict(list)
    for cand, shown in others:
        role = cand.spec.role(cand.relative) if cand.spec is not None else "image"
        by_role[role].append((cand, shown))
    for cand, shown in by_role["image"] + by_role["mask"]:
        _convert_other(cand, shown, ctx, tables)
    _convert_instances(by_role["instances"], ctx, tables)

    write_manifest(ctx.out / "manifest.tsv", ctx.rows, label_cfg["columns"])
    write_quarantine(ctx.out / "quarantine.tsv", ctx.quarantine)
    write_batches(
        ctx.out,
        sorted({r["subject"] for r in ctx.rows}),
        config["batches"]["max_subjects"],
        config["batches"]["min_batches"],
    )
    if config["deid"]["mapping"]:
        write_mapping(Path(config["deid"]["mapping"]), ctx.mapping)
    log.info(
        "ingest: %d images/volumes of %d subjects, %d files quarantined, %d other files skipped",
        len(ctx.rows),
        len({r["subject"] for r in ctx.rows}),
        len(ctx.quarantine),
        n_skipped,
    )
    return len(ctx.rows), len(ctx.quarantine)


def _read_entry(
    cand: Candidate,
    shown: str,
    ctx: _Context,
    seen_sop: dict[str, Path],
    folders: list[Path],
    tables: dict[Path, dict[str, dict[str, str]]],
) -> _Entry | None:
    """Header pass of one DICOM file; None (and a quarantine row) when it cannot be used."""
    try:
        ds = read_header(cand.path)
    except DicomReadError as exc:
        ctx.reject(shown, str(exc))
        return None
    sop = str(ds.get("SOPInstanceUID", ""))
    if sop and sop in seen_sop:
        ctx.reject(shown, f"duplicate SOPInstanceUID of {_relative(seen_sop[sop], folders)}")
        return None
    seen_sop[sop] = cand.path
    patient_id = str(ds.get("PatientID", "") or "")
    if not patient_id and cand.spec is not None and (cand.spec.pattern or cand.spec.table):
        # An anonymised export without PatientID: the folder layout can still say who it is.
        try:
            patient_id = identify(cand, tables)["subject"]
        except ValueError:
            patient_id = ""
    missing = [k for k in ("StudyInstanceUID", "SeriesInstanceUID") if not ds.get(k)]
    if not patient_id:
        missing.insert(0, "PatientID")
    if missing:
        ctx.reject(shown, f"missing {', '.join(missing)}")
        return None
    if "PixelData" not in ds and not ds.get("Rows"):
        sop_class = ds.get("SOPClassUID")
        name = getattr(sop_class, "name", None) or str(sop_class or "unknown SOP class")
        ctx.reject(shown, f"no pixel data ({name})")
        return None
    burned = str(ds.get("BurnedInAnnotation", "")).upper() == "YES"
    if burned and ctx.config["ingest"]["burned_in"] == "quarantine":
        ctx.reject(shown, "BurnedInAnnotation YES (ingest.burned_in: quarantine)")
        return None
    key_keyword = ctx.config["labels"]["key"]
    try:
        frames = frames_from_header(ds, cand.path)
    except (ValueError, TypeError, AttributeError) as exc:
        ctx.reject(shown, f"unusable image header: {exc}")
        return None
    dates = {k: str(ds.get(k)) for k in ("StudyDate", "AcquisitionDate") if ds.get(k)}
    if ds.get("AcquisitionDateTime"):
        dates["AcquisitionDateTime"] = str(ds.AcquisitionDateTime)
    identifiers = {k: str(ds.get(k)) for k in IDENTIFYING_KEYWORDS if ds.get(k)}
    return _Entry(
        path=cand.path,
        shown=shown,
        modality=str(ds.get("Modality", "OT")) or "OT",
        patient_id=patient_id,
        study_uid=str(ds.StudyInstanceUID),
        series_uid=str(ds.SeriesInstanceUID),
        sop_uid=sop,
        instance=int(ds.get("InstanceNumber", 0) or 0),
        key_value=str(ds.get(key_keyword, "")) if ctx.labels else None,
        description=str(ds.get("SeriesDescription", "") or ""),
        frames=frames,
        dates=dates,
        identifiers=identifiers if ctx.config["deid"]["keep_identifiers"] else {},
    )


def _is_projection(members: list[_Entry]) -> bool:
    """Radiographs: one 2D greyscale image per file, each written on its own."""
    return members[0].modality in PROJECTION_MODALITIES and all(
        len(e.frames) == 1 and e.frames[0].frame is None and not e.frames[0].colour for e in members
    )


def _ids(entry: _Entry, ctx: _Context) -> tuple[str, str]:
    subject = pseudonym(entry.patient_id, ctx.secret, "sub-")
    study = pseudonym(entry.study_uid, ctx.secret, "ses-", 8)
    ctx.mapping.append((subject, "PatientID", entry.patient_id))
    ctx.mapping.append((study, "StudyInstanceUID", entry.study_uid))
    return subject, study


def _date_fields(entry: _Entry, ctx: _Context) -> dict[str, str]:
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


def _convert_projections(members: list[_Entry], ctx: _Context) -> None:
    """Each radiograph file becomes one ``(columns, rows, 1)`` image (the classic path)."""
    series_uid = members[0].series_uid
    for index, entry in enumerate(members):
        subject, study = _ids(entry, ctx)
        series = f"{entry.modality}-{pseudonym(series_uid, ctx.secret, '', 8)}"
        if len(members) > 1:
            series += f"-{index + 1:03d}"
        try:
            image = read_image(entry.path)
            source_hash = sha256_file(entry.path)
        except (DicomReadError, OSError) as exc:
            ctx.reject(entry.shown, str(exc))
            continue
        sidecar = {
            **image.meta,
            "SOPInstanceUID": entry.sop_uid,
            "SourceSHA256": source_hash,
            **_date_fields(entry, ctx),
        }
        row = _write(ctx, entry, subject, study, series, image, sidecar, dtype=np.float32)
        ctx.rows.append(row)


def _convert_volumes(members: list[_Entry], ctx: _Context, role: str = "image") -> None:
    """One SeriesInstanceUID: split into volumes, then stack each.

    A label series (``role`` mask) is stored as integers and only when its grid matches an
    image of the same subject and study; otherwise its files are quarantined.
    """
    by_path = {e.path: e for e in members}
    frames = [f for e in members for f in e.frames]
    parts = split_series(frames)
    first = members[0]
    subject, study = _ids(first, ctx)
    base = f"{first.modality}-{pseudonym(first.series_uid, ctx.secret, '', 8)}"
    for number, part in enumerate(parts, start=1):
        series = base if len(parts) == 1 else f"{base}-{number:03d}"
        files = sorted({f.path for f in part.frames}, key=lambda p: by_path[p].instance)
        explanation = describe_split(part.reasons)
        if explanation:
            log.info("%s: %s of %d: %s", series, number, len(parts), explanation)
        try:
            options = ctx.options
            if role != "image":
                options = AssemblyOptions(uneven_spacing=options.uneven_spacing, labels=True)
            image = assemble_series(part.frames, options)
            source_hash = _combined_hash(files)
        except (DicomReadError, OSError) as exc:
            for path in files:
                ctx.reject(by_path[path].shown, str(exc))
            continue
        entry = by_path[files[0]]
        dtype = None
        if role != "image":
            problem = _grid_problem(ctx, subject, study, image.data.shape[:3])
            if problem:
                for path in files:
                    ctx.reject(
                        by_path[path].shown,
                        f"label series {entry.description!r} ({len(files)} files): {problem}",
                    )
                continue
            image.data, dtype = _as_labels(image.data, image.warnings)
            _check_affine(ctx, subject, study, image.data.shape[:3], image.affine, image.warnings)
        for warning in image.warnings:
            log.warning("%s/%s: %s", subject, series, warning)
        sidecar: dict[str, Any] = {
            **image.meta,
            **_source_geometry(image, part.frames, by_path),
            "SourceSHA256": source_hash,
            "SourceFiles": len(files),
            **_date_fields(entry, ctx),
        }
        if role != "image":
            sidecar["Role"] = role
        if part.reasons:
            sidecar["SeriesSplit"] = {
                "part": number,
                "of": len(parts),
                "by": dict(part.reasons),
                "explanation": explanation,
            }
        if len(files) == 1:
            sidecar["SOPInstanceUID"] = entry.sop_uid
        row = _write(ctx, entry, subject, study, series, image, sidecar, dtype=dtype)
        row["role"] = role
        ctx.rows.append(row)


def _source_geometry(
    image: DicomImage, frames: list[FrameInfo], by_path: dict[Path, _Entry]
) -> dict[str, Any]:
    """What a DICOM SEG of this volume needs to reference its source slices.

    ``SliceSOPInstanceUIDs`` lists the SOP instance of each NIfTI slice k (one per k); it is
    left out when slices do not map one to one onto files (multi-frame or mosaic files, time
    series, or slices resampled onto a regular grid).
    """
    header = image.header
    out: dict[str, Any] = {}
    for keyword in ("FrameOfReferenceUID", "SOPClassUID"):
        if header is not None and header.get(keyword):
            out[keyword] = str(header.get(keyword))
    iop = image.meta.get("ImageOrientationPatientDICOM")
    if iop is not None:
        out["ImageOrientationPatient"] = [float(v) for v in iop]
    if header is not None and "SliceThickness" not in image.meta and header.get("SliceThickness"):
        out["SliceThickness"] = float(header.SliceThickness)
    single = all(f.frame is None and not f.mosaic for f in frames)
    volumes = image.data.shape[3] if image.data.ndim >= 4 else 1
    if single and volumes == 1 and not image.meta.get("Resampled"):
        ordered = frames_by_position(frames)
        if len(ordered) == image.data.shape[2]:
            out["SliceSOPInstanceUIDs"] = [by_path[group[0].path].sop_uid for group in ordered]
    return out


def _as_labels(data: np.ndarray, warnings: list[str]) -> tuple[np.ndarray, Any]:
    """A label map as the smallest unsigned integer type that holds it (int32 if negative).

    Non-integer values (a mask resampled or saved as float) are rounded, with a warning.
    """
    values = np.asarray(data)
    if values.ndim == 5:  # colour label image: the largest value over the channels
        values = values.max(axis=-1)
    if values.ndim == 4 and values.shape[3] == 1:
        values = values[..., 0]
    if not np.issubdtype(values.dtype, np.integer):
        rounded = np.rint(np.nan_to_num(values))
        if not np.array_equal(rounded, values):
            warnings.append("label map had non-integer values: rounded to the nearest integer")
        values = rounded
    lo = float(values.min()) if values.size else 0.0
    hi = float(values.max()) if values.size else 0.0
    if lo < 0 or hi > np.iinfo(np.uint16).max:
        return values.astype(np.int32), np.int32
    if hi <= np.iinfo(np.uint8).max:
        return values.astype(np.uint8), np.uint8
    return values.astype(np.uint16), np.uint16


def _check_affine(
    ctx: _Context,
    subject: str,
    study: str,
    spatial: tuple[int, ...],
    affine: np.ndarray,
    warnings: list[str],
) -> None:
    """Warn when a label's affine differs from every same-shaped image of its subject/study.

    The label keeps its own affine (a header written by another tool may differ in the last
    digits); more than 0.001 mm at a corner of the grid is worth telling.
    """
    corners = np.array(
        [
            [i, j, k, 1.0]
            for i in (0, spatial[0] - 1)
            for j in (0, spatial[1] - 1)
            for k in (0, spatial[2] - 1)
        ]
    ).T
    gaps = [
        float(np.abs((affine - other) @ corners).max())
        for shape, other in ctx.grids.get((subject, study), [])
        if tuple(shape) == tuple(int(s) for s in spatial)
    ]
    if gaps and min(gaps) > 1e-3:
        warnings.append(
            f"label grid is {min(gaps):.3g} mm away from the image of the same shape"
            " (affines differ; the label keeps its own)"
        )


def _grid_problem(ctx: _Context, subject: str, study: str, spatial: tuple[int, ...]) -> str:
    """Why a label of this shape cannot label an image of its subject/study ("" if it can)."""
    wanted = "x".join(str(int(s)) for s in spatial)
    shapes = sorted(
        {
            "x".join(row["shape"].split("x")[:3])
            for row in ctx.rows
            if row["subject"] == subject and row["study"] == study and row["role"] == "image"
        }
    )
    if wanted in shapes:
        return ""
    if not shapes:
        return f"no image of the same subject and study to label (label shape {wanted})"
    return (
        f"label shape {wanted} matches no image of the same subject and study "
        f"(image shapes: {', '.join(shapes)})"
    )


def _combined_hash(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(sha256_file(path).encode())
    return digest.hexdigest()


def _write(
    ctx: _Context,
    entry: _Entry,
    subject: str,
    study: str,
    series: str,
    image: DicomImage,
    sidecar: dict[str, Any],
    dtype: Any,
) -> dict[str, Any]:
    """Write one DICOM-derived image and return its manifest row (labels joined)."""
    sidecar = {
        **sidecar,
        "Subject": subject,
        "Study": study,
        "Series": series,
        "StudyInstanceUID": entry.study_uid,
        "SeriesInstanceUID": entry.series_uid,
        "Warnings": image.warnings,
        "ConversionSoftware": f"medcnn {__version__}",
        **entry.identifiers,
    }
    row = _write_outputs(ctx, subject, study, series, image.data, image.affine, sidecar, dtype)
    row["modality"] = entry.modality
    row["source"] = "dicom"
    row["description"] = entry.description
    if ctx.labels:
        found = ctx.labels.get(entry.key_value or "")
        for column in ctx.config["labels"]["columns"]:
            row[column] = found[column] if found else ""
    return row


def _write_outputs(
    ctx: _Context,
    subject: str,
    study: str,
    series: str,
    data: np.ndarray,
    affine: np.ndarray,
    sidecar: dict[str, Any],
    dtype: Any,
) -> dict[str, Any]:
    nii = ctx.out / subject / f"{series}.nii.gz"
    sidecar_path = ctx.out / subject / f"{series}.json"
    colour = data.ndim == 5
    volumes = int(data.shape[3]) if data.ndim >= 4 else 1
    # Rewrite only when something changed, so unchanged subjects keep their timestamps and
    # Snakemake re-runs downstream jobs for new or changed scans only.
    previous = _read_json(sidecar_path)
    if previous != _normalise(sidecar) or not nii.exists():
        tr = sidecar.get("RepetitionTime") if volumes > 1 else None
        write_nifti(nii, data, affine, dtype=dtype, repetition_time=tr)
        write_json(sidecar_path, sidecar)
    spatial = data.shape[:3]
    if sidecar.get("Role", "image") == "image":
        ctx.grids[(subject, study)].append((tuple(int(s) for s in spatial), np.asarray(affine)))
    spacing = [abs(float(v)) for v in (affine[:3, :3] ** 2).sum(axis=0) ** 0.5]
    shape = list(spatial) + ([volumes] if volumes > 1 else [])
    return {
        "subject": subject,
        "study": study,
        "series": series,
        "modality": sidecar.get("Modality", ""),
        "dims": 2 if spatial[2] == 1 else 3,
        "shape": "x".join(str(s) for s in shape),
        "spacing": "x".join(f"{s:.4g}" for s in spacing),
        "photometric": sidecar.get("PhotometricInterpretation", ""),
        "view": sidecar.get("ViewPosition", ""),
        "path": str(nii.relative_to(ctx.results)),
        "sidecar": str(sidecar_path.relative_to(ctx.results)),
        "warnings": ";".join(sidecar.get("Warnings", [])),
        "volumes": volumes,
        "channels": 3 if colour else 1,
        "role": sidecar.get("Role", "image"),
        "description": sidecar.get("SeriesDescription", ""),
    }


def _other_ids(
    cand: Candidate, ctx: _Context, tables: dict[Path, dict[str, dict[str, str]]]
) -> tuple[dict[str, str], str, str]:
    """(original ids, subject pseudonym, study pseudonym) of a non-DICOM file.

    Raises:
        ValueError: the file does not match its input's pattern or table.
    """
    ids = identify(cand, tables)
    subject = pseudonym(ids["subject"], ctx.secret, "sub-")
    study = pseudonym(f"{ids['subject']}/{ids['study']}", ctx.secret, "ses-", 8)
    ctx.mapping.append((subject, "subject", ids["subject"]))
    ctx.mapping.append((study, "study", f"{ids['subject']}/{ids['study']}"))
    return ids, subject, study


def _read_other(cand: Candidate, ctx: _Context) -> tuple[np.ndarray, np.ndarray, dict, list]:
    """(voxels, affine, sidecar facts, warnings) of a NIfTI or 2D image file.

    Raises:
        DicomReadError: the file cannot be decoded (NIfTI and image errors derive from it).
    """
    if cand.kind == "nifti":
        return read_nifti(cand.path)
    return read_image_file(cand.path, ctx.config["ingest"]["image_spacing"])


def _convert_other(
    cand: Candidate, shown: str, ctx: _Context, tables: dict[Path, dict[str, dict[str, str]]]
) -> None:
    """A NIfTI or 2D image file: subject and study from the input's pattern or table.

    A file matching its input's ``masks`` pattern is a label map: stored as integers, and
    quarantined when its grid matches no image of its subject and study.
    """
    role = cand.spec.role(cand.relative) if cand.spec is not None else "image"
    try:
        ids, subject, study = _other_ids(cand, ctx, tables)
    except ValueError as exc:
        ctx.reject(shown, str(exc))
        return
    modality = cand.spec.modality if cand.spec is not None else "OT"
    series = f"{modality}-{pseudonym(cand.relative, ctx.secret, '', 8)}"
    try:
        data, affine, meta, warnings = _read_other(cand, ctx)
        source_hash = sha256_file(cand.path)
    except (DicomReadError, OSError) as exc:
        ctx.reject(shown, str(exc))
        return
    dtype = None
    if role == "mask":
        problem = _grid_problem(ctx, subject, study, data.shape[:3])
        if problem:
            ctx.reject(shown, f"mask file {shown}: {problem}")
            return
        data, dtype = _as_labels(data, warnings)
        _check_affine(ctx, subject, study, data.shape[:3], affine, warnings)
        meta = {k: v for k, v in meta.items() if k != "PhotometricInterpretation"}
    sidecar = {
        **meta,
        "Modality": modality,
        "Subject": subject,
        "Study": study,
        "Series": series,
        "SourceSHA256": source_hash,
        "Warnings": warnings,
        "ConversionSoftware": f"medcnn {__version__}",
    }
    if role != "image":
        sidecar["Role"] = role
    if ids["description"]:
        sidecar["SeriesDescription"] = ids["description"]
    row = _write_outputs(ctx, subject, study, series, data, affine, sidecar, dtype=dtype)
    row["source"] = cand.kind
    if ctx.labels:
        found = ctx.labels.get(ids["key"])
        for column in ctx.config["labels"]["columns"]:
            row[column] = found[column] if found else ""
    ctx.rows.append(row)


def _convert_instances(
    files: list[tuple[Candidate, str]],
    ctx: _Context,
    tables: dict[Path, dict[str, dict[str, str]]],
) -> None:
    """Merge one-binary-mask-per-object files into one instance label map per subject/study.

    Files are taken in sorted path order and numbered 1..N; where objects overlap, the later
    id keeps the pixel (counted in a warning). A file whose grid matches no image of its
    subject and study is quarantined; an empty file is skipped with a warning.
    """
    groups: dict[tuple[str, str], list[tuple[Candidate, str, dict[str, str]]]] = defaultdict(list)
    for cand, shown in files:
        try:
            ids, subject, study = _other_ids(cand, ctx, tables)
        except ValueError as exc:
            ctx.reject(shown, str(exc))
            continue
        groups[(subject, study)].append((cand, shown, ids))
    for (subject, study), members in sorted(groups.items()):
        members.sort(key=lambda m: m[0].relative)
        labels: np.ndarray | None = None  # built as the files are read: one array in memory
        first: tuple[np.ndarray, dict[str, Any]] | None = None
        warnings: list[str] = []
        digest = hashlib.sha256()
        used: list[tuple[Candidate, str, dict[str, str]]] = []
        n_empty = overlap = 0
        for cand, shown, ids in members:
            try:
                data, affine, meta, _ = _read_other(cand, ctx)
                source_hash = sha256_file(cand.path)
            except (DicomReadError, OSError) as exc:
                ctx.reject(shown, str(exc))
                continue
            problem = _grid_problem(ctx, subject, study, data.shape[:3])
            if not problem and labels is not None and data.shape[:3] != labels.shape:
                shape = "x".join(str(s) for s in labels.shape)
                problem = f"shape differs from the other instance masks ({shape})"
            if problem:
                ctx.reject(shown, f"instance mask file {shown}: {problem}")
                continue
            binary = np.asarray(data).reshape(data.shape[:3] + (-1,)).any(axis=-1)
            digest.update(source_hash.encode())
            if not binary.any():
                n_empty += 1
                continue
            if labels is None:
                labels = np.zeros(binary.shape, dtype=np.int32)
                first = (affine, meta)
            used.append((cand, shown, ids))
            overlap += int(np.count_nonzero(labels[binary]))
            labels[binary] = len(used)
        if n_empty:
            warnings.append(f"{n_empty} instance mask file(s) empty: skipped")
        if labels is None or first is None:
            continue
        if overlap:
            warnings.append(f"{overlap} pixels belong to more than one instance: the later id kept")
        labels, dtype = _as_labels(labels, warnings)
        affine, meta = first
        _check_affine(ctx, subject, study, labels.shape[:3], affine, warnings)
        cand, _, ids = used[0]
        modality = cand.spec.modality if cand.spec is not None else "OT"
        original = f"{ids['subject']}/{ids['study']}"
        series = f"{modality}-{pseudonym('instances:' + original, ctx.secret, '', 8)}"
        meta = {
            k: v for k, v in meta.items() if k not in ("PhotometricInterpretation", "ImageMode")
        }
        sidecar: dict[str, Any] = {
            **meta,
            "Modality": modality,
            "Subject": subject,
            "Study": study,
            "Series": series,
            "Role": "instances",
            "NumberOfInstances": len(used),
            "SourceFiles": len(used) + n_empty,
            "SourceSHA256": digest.hexdigest(),
            "Warnings": warnings,
            "ConversionSoftware": f"medcnn {__version__}",
        }
        if ids["description"]:
            sidecar["SeriesDescription"] = ids["description"]
        for warning in warnings:
            log.warning("%s/%s: %s", subject, series, warning)
        row = _write_outputs(ctx, subject, study, series, labels, affine, sidecar, dtype=dtype)
        row["source"] = cand.kind
        if ctx.labels:
            for column in ctx.config["labels"]["columns"]:
                row[column] = ""
        ctx.rows.append(row)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _normalise(payload: dict[str, Any]) -> Any:
    """The payload as it reads back from JSON (tuples become lists, numpy scalars numbers)."""
    return json.loads(json.dumps(payload, default=jsonable))
