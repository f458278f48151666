"""Ingest of files that are not DICOM: NIfTI volumes and 2D images (PNG, JPEG, TIFF), and
one-mask-per-object files merged into instance label maps.

Subject and study come from the input's pattern or table; each file is decoded in a bounded
worker and isolated, so one bad file never stops the cohort.
"""

from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from medcnn import __version__
from medcnn.ingest.context import Context
from medcnn.ingest.discovery import Candidate, identify
from medcnn.ingest.inputs import TABLE_FIELDS
from medcnn.ingest.outputs import as_labels, check_affine, grid_problem, write_outputs
from medcnn.io.bounded import run_bounded
from medcnn.io.deid import pseudonym
from medcnn.io.errors import DicomReadError
from medcnn.io.files import sha256_file
from medcnn.io.image2d import read_image_file
from medcnn.io.nifti import read_nifti
from medcnn.io.scrub import free_text

log = logging.getLogger("medcnn.ingest.pipeline")


def other_ids(
    cand: Candidate, ctx: Context, tables: dict[Path, dict[str, dict[str, str]]]
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


def read_other(cand: Candidate, ctx: Context) -> tuple[np.ndarray, np.ndarray, dict, list]:
    """(voxels, affine, sidecar facts, warnings) of a NIfTI or 2D image file.

    Raises:
        DicomReadError: the file cannot be decoded (NIfTI and image errors derive from it).
    """
    if cand.kind == "nifti":
        return run_bounded(read_nifti, (cand.path, ctx.limits), ctx.limits)
    spacing = ctx.config["ingest"]["image_spacing"]
    return run_bounded(
        read_image_file, (cand.path, spacing, ctx.limits.max_pixel_bytes), ctx.limits
    )


def convert_other(
    cand: Candidate, ctx: Context, tables: dict[Path, dict[str, dict[str, str]]]
) -> None:
    """A NIfTI or 2D image file: subject and study from the input's pattern or table.

    A file matching its input's ``masks`` pattern is a label map: stored as integers, and
    quarantined when its grid matches no image of its subject and study.
    """
    with ctx.isolated([cand.path], "decode"):
        _convert_other_file(cand, ctx, tables)


def _convert_other_file(
    cand: Candidate, ctx: Context, tables: dict[Path, dict[str, dict[str, str]]]
) -> None:
    role = cand.spec.role(cand.relative) if cand.spec is not None else "image"
    ids, subject, study = other_ids(cand, ctx, tables)
    modality = cand.spec.modality if cand.spec is not None else "OT"
    series = f"{modality}-{pseudonym(cand.relative, ctx.secret, '', 8)}"
    data, affine, meta, warnings = read_other(cand, ctx)
    source_hash = sha256_file(cand.path)
    dtype = None
    if role == "mask":
        problem = grid_problem(ctx, subject, study, data.shape[:3])
        if problem:
            raise DicomReadError(f"mask file {ctx.shown(cand.path)}: {problem}")
        data, dtype = as_labels(data, warnings)
        check_affine(ctx, subject, study, data.shape[:3], affine, warnings)
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
    _describe(sidecar, ids, ctx)
    _table_facts(sidecar, ids)
    row = write_outputs(ctx, subject, study, series, data, affine, sidecar, dtype=dtype)
    row["source"] = cand.kind
    # Labels from the labels table, or else from the input table's own row (one table).
    found = ctx.labels.get(ids["key"]) if ctx.labels else ids.get("row")
    if ctx.labels or found:
        for column in ctx.config["labels"]["columns"]:
            row[column] = (found or {}).get(column, "")
    ctx.rows.append(row)
    ctx.converted([cand.path], subject, series)


def _table_facts(sidecar: dict[str, Any], ids: dict[str, Any]) -> None:
    """The view, sex and age an input table gives, as the DICOM attributes a radiograph
    would carry them in (ViewPosition reaches the manifest's ``view`` and the subgroups)."""
    for field, attribute in TABLE_FIELDS.items():
        if attribute and ids.get(field):
            value = str(ids[field]).strip()
            if field in ("view", "sex"):
                value = value.upper()
            sidecar[attribute] = value


def _describe(sidecar: dict[str, Any], ids: dict[str, str], ctx: Context) -> None:
    """The pattern's ``series`` group as SeriesDescription, per ``deid.free_text``."""
    if ids["description"]:
        text = free_text(ids["description"], [ids["subject"]], ctx.config["deid"]["free_text"])
        if text:
            sidecar["SeriesDescription"] = text


def convert_instances(
    files: list[Candidate],
    ctx: Context,
    tables: dict[Path, dict[str, dict[str, str]]],
) -> None:
    """Merge one-binary-mask-per-object files into one instance label map per subject/study.

    Files are taken in sorted path order and numbered 1..N; where objects overlap, the later
    id keeps the pixel (counted in a warning). A file whose grid matches no image of its
    subject and study is quarantined; an empty file is skipped with a warning.
    """
    groups: dict[tuple[str, str], list[tuple[Candidate, dict[str, str]]]] = defaultdict(list)
    for cand in files:
        with ctx.isolated([cand.path], "identify"):
            ids, subject, study = other_ids(cand, ctx, tables)
            groups[(subject, study)].append((cand, ids))
    for (subject, study), members in sorted(groups.items()):
        with ctx.isolated([c.path for c, _ in members], "instances"):
            _merge_instances(ctx, subject, study, members)


def _merge_instances(
    ctx: Context, subject: str, study: str, members: list[tuple[Candidate, dict[str, str]]]
) -> None:
    """One subject and study's instance mask files into one label map (see above)."""
    members.sort(key=lambda m: m[0].relative)
    labels: np.ndarray | None = None  # built as the files are read: one array in memory
    first: tuple[np.ndarray, dict[str, Any]] | None = None
    warnings: list[str] = []
    digest = hashlib.sha256()
    used: list[tuple[Candidate, dict[str, str]]] = []
    n_empty = overlap = 0
    for cand, ids in members:
        with ctx.isolated([cand.path], "decode"):
            data, affine, meta, _ = read_other(cand, ctx)
            source_hash = sha256_file(cand.path)
            problem = grid_problem(ctx, subject, study, data.shape[:3])
            if not problem and labels is not None and data.shape[:3] != labels.shape:
                shape = "x".join(str(s) for s in labels.shape)
                problem = f"shape differs from the other instance masks ({shape})"
            if problem:
                raise DicomReadError(f"instance mask file {ctx.shown(cand.path)}: {problem}")
            binary = np.asarray(data).reshape(data.shape[:3] + (-1,)).any(axis=-1)
            digest.update(source_hash.encode())
            if not binary.any():
                n_empty += 1
                ctx.skip(cand.path, "instances", "empty instance mask (no object)")
                continue
            if labels is None:
                labels = np.zeros(binary.shape, dtype=np.int32)
                first = (affine, meta)
            used.append((cand, ids))
            overlap += int(np.count_nonzero(labels[binary]))
            labels[binary] = len(used)
    if n_empty:
        warnings.append(f"{n_empty} instance mask file(s) empty: skipped")
    if labels is None or first is None:
        return
    if overlap:
        warnings.append(f"{overlap} pixels belong to more than one instance: the later id kept")
    labels, dtype = as_labels(labels, warnings)
    affine, meta = first
    check_affine(ctx, subject, study, labels.shape[:3], affine, warnings)
    cand, ids = used[0]
    modality = cand.spec.modality if cand.spec is not None else "OT"
    original = f"{ids['subject']}/{ids['study']}"
    series = f"{modality}-{pseudonym('instances:' + original, ctx.secret, '', 8)}"
    meta = {k: v for k, v in meta.items() if k not in ("PhotometricInterpretation", "ImageMode")}
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
    _describe(sidecar, ids, ctx)
    for warning in warnings:
        log.warning("%s/%s: %s", subject, series, warning)
    row = write_outputs(ctx, subject, study, series, labels, affine, sidecar, dtype=dtype)
    row["source"] = cand.kind
    if ctx.labels:
        for column in ctx.config["labels"]["columns"]:
            row[column] = ""
    ctx.rows.append(row)
    ctx.converted([c.path for c, _ in used], subject, series)
