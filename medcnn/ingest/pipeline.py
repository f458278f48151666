"""Ingest: input folders -> de-identified NIfTI + sidecars, ``manifest.tsv``, ``quarantine.tsv``.

Two passes: headers first (cheap, to group images into patients, studies and series), then
pixel data one image at a time, so memory stays flat however large the cohort. A file that
fails either pass is quarantined with its reason and the batch goes on.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from medcnn import __version__
from medcnn.ingest.discovery import discover
from medcnn.ingest.manifest import write_manifest, write_quarantine
from medcnn.io.deid import IDENTIFYING_KEYWORDS, pseudonym, resolve_secret
from medcnn.io.dicom import DicomReadError, read_header, read_image, sha256_file
from medcnn.io.nifti import jsonable, write_json, write_nifti

log = logging.getLogger(__name__)


@dataclass
class _Entry:
    path: Path
    modality: str
    patient_id: str
    study_uid: str
    series_uid: str
    sop_uid: str
    instance: int
    key_value: str | None


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
        config: the validated workflow configuration.

    Returns:
        (images written to the manifest, files quarantined).
    """
    results = Path(config["results"])
    out = results / "ingest"
    folders = [Path(p) for p in config["inputs"]]
    secret = resolve_secret(config["deid"]["secret"])
    keep_ids = config["deid"]["keep_identifiers"]
    label_cfg = config["labels"]
    labels: dict[str, dict[str, str]] = {}
    if label_cfg["path"]:
        labels = load_labels(Path(label_cfg["path"]), label_cfg["column"], label_cfg["columns"])
    key_keyword = label_cfg["key"]

    quarantine: list[tuple[str, str]] = []
    entries: list[_Entry] = []
    seen_sop: dict[str, Path] = {}
    n_other = 0
    for cand in discover(folders, config["ingest"]["min_bytes"]):
        shown = _relative(cand.path, folders)
        if cand.kind != "dicom":
            n_other += 1
            log.info("skipped (not a scan type ingest reads yet): %s", shown)
            continue
        try:
            ds = read_header(cand.path)
        except DicomReadError as exc:
            quarantine.append((shown, str(exc)))
            log.warning("quarantined %s: %s", shown, exc)
            continue
        sop = str(ds.get("SOPInstanceUID", ""))
        if sop and sop in seen_sop:
            reason = f"duplicate SOPInstanceUID of {_relative(seen_sop[sop], folders)}"
            quarantine.append((shown, reason))
            log.warning("quarantined %s: %s", shown, reason)
            continue
        seen_sop[sop] = cand.path
        required = ("PatientID", "StudyInstanceUID", "SeriesInstanceUID")
        missing = [k for k in required if not ds.get(k)]
        if missing:
            reason = f"missing {', '.join(missing)}"
            quarantine.append((shown, reason))
            log.warning("quarantined %s: %s", shown, reason)
            continue
        entries.append(
            _Entry(
                path=cand.path,
                modality=str(ds.get("Modality", "OT")) or "OT",
                patient_id=str(ds.PatientID),
                study_uid=str(ds.StudyInstanceUID),
                series_uid=str(ds.SeriesInstanceUID),
                sop_uid=sop,
                instance=int(ds.get("InstanceNumber", 0) or 0),
                key_value=str(ds.get(key_keyword, "")) if labels else None,
            )
        )

    by_series: dict[tuple[str, str], list[_Entry]] = defaultdict(list)
    for entry in entries:
        by_series[(entry.patient_id, entry.series_uid)].append(entry)

    rows: list[dict[str, Any]] = []
    for (_, series_uid), members in sorted(by_series.items(), key=lambda kv: kv[1][0].sop_uid):
        members.sort(key=lambda e: (e.instance, e.sop_uid))
        for index, entry in enumerate(members):
            subject = pseudonym(entry.patient_id, secret, "sub-")
            study = pseudonym(entry.study_uid, secret, "ses-", 8)
            series = f"{entry.modality}-{pseudonym(series_uid, secret, '', 8)}"
            if len(members) > 1:
                series += f"-{index + 1:03d}"
            shown = _relative(entry.path, folders)
            try:
                row = _convert(entry, subject, study, series, out, results, keep_ids)
            except DicomReadError as exc:
                quarantine.append((shown, str(exc)))
                log.warning("quarantined %s: %s", shown, exc)
                continue
            if labels:
                found = labels.get(entry.key_value or "")
                for column in label_cfg["columns"]:
                    row[column] = found[column] if found else ""
            rows.append(row)

    write_manifest(out / "manifest.tsv", rows, label_cfg["columns"])
    write_quarantine(out / "quarantine.tsv", quarantine)
    log.info(
        "ingest: %d images of %d subjects, %d quarantined, %d other files skipped",
        len(rows),
        len({r["subject"] for r in rows}),
        len(quarantine),
        n_other,
    )
    return len(rows), len(quarantine)


def _convert(
    entry: _Entry,
    subject: str,
    study: str,
    series: str,
    out: Path,
    results: Path,
    keep_ids: bool,
) -> dict[str, Any]:
    nii = out / subject / f"{series}.nii.gz"
    sidecar_path = out / subject / f"{series}.json"
    source_hash = sha256_file(entry.path)
    image = read_image(entry.path)
    sidecar: dict[str, Any] = {
        **image.meta,
        "Subject": subject,
        "Study": study,
        "Series": series,
        "StudyInstanceUID": entry.study_uid,
        "SeriesInstanceUID": entry.series_uid,
        "SOPInstanceUID": entry.sop_uid,
        "SourceSHA256": source_hash,
        "Warnings": image.warnings,
        "ConversionSoftware": f"medcnn {__version__}",
    }
    if keep_ids:
        for keyword in IDENTIFYING_KEYWORDS:
            if keyword in image.header:
                sidecar[keyword] = str(image.header.get(keyword))
    # Rewrite only when something changed, so unchanged subjects keep their timestamps and
    # Snakemake re-runs downstream jobs for new or changed scans only.
    previous = _read_json(sidecar_path)
    if previous != _normalise(sidecar) or not nii.exists():
        write_nifti(nii, image.data, image.affine)
        write_json(sidecar_path, sidecar)
    shape = image.data.shape
    spacing = [abs(float(v)) for v in (image.affine[:3, :3] ** 2).sum(axis=0) ** 0.5]
    return {
        "subject": subject,
        "study": study,
        "series": series,
        "modality": entry.modality,
        "dims": 2 if shape[2] == 1 else 3,
        "shape": "x".join(str(s) for s in shape),
        "spacing": "x".join(f"{s:.4g}" for s in spacing),
        "photometric": image.meta["PhotometricInterpretation"],
        "view": image.meta["ViewPosition"],
        "path": str(nii.relative_to(results)),
        "sidecar": str(sidecar_path.relative_to(results)),
        "warnings": ";".join(image.warnings),
    }


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _normalise(payload: dict[str, Any]) -> Any:
    """The payload as it reads back from JSON (tuples become lists, numpy scalars numbers)."""
    return json.loads(json.dumps(payload, default=jsonable))
