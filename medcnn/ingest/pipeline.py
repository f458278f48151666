"""Ingest: input folders -> de-identified NIfTI + sidecars, ``manifest.tsv``, ``quarantine.tsv``.

Two passes: headers first (cheap, to group images into patients, studies and series, and to
split series into volumes), then pixel data one series at a time, so memory stays flat however
large the cohort. A file that fails either pass is quarantined with its reason and the batch
goes on, whatever the exception (each file and series is isolated, decoded in a worker with a
time limit and a memory cap, and its declared size checked before it is decoded). Nothing is
ever written below the input folders, and nothing outside them is read (links and DICOMDIR
entries that resolve outside are listed, not followed, unless ``ingest.follow_links``).

Every file found is accounted for in ``files.tsv`` (file, fate, stage, detail): ``converted``,
``quarantined`` (also in ``quarantine.tsv``) or ``skipped`` with the reason. Paths there, in
the log and in reports are relative to their input folder, each component that is not a plain
scan-file name replaced by a keyed pseudonym (``ingest.show_paths`` shows them).

Outputs per image or volume: ``results/ingest/{subject}/{series}.nii.gz`` (qform = sform,
code 1) and ``{series}.json`` (BIDS-like, de-identified). Both are rewritten only when the
sidecar changes, so Snakemake re-runs downstream jobs for new or changed scans only.

Labels for segmentation come in three ways, each recorded in the manifest's ``role`` column:
DICOM series whose SeriesDescription matches ``ingest.label_series`` and whose content is a
label map (few whole non-negative values; radiographs never are), and files matching an
input's ``masks`` pattern are label maps (``mask``); files matching an input's ``instances``
pattern (one binary mask per object, as in the 2018 Data Science Bowl) are merged per subject
and study into one instance label map (``instances``, ids 1..N in path order). Labels are
stored as integers (never interpolated) and converted after the images, so that a label whose
grid matches no image of its subject and study is quarantined instead of written.
"""

from __future__ import annotations

import contextlib
import logging
import re
import warnings
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pydicom

from medcnn.config import ConfigError
from medcnn.ingest.batches import write_batches
from medcnn.ingest.context import Context, Entry
from medcnn.ingest.convert_dicom import convert_projections, convert_volumes
from medcnn.ingest.convert_other import convert_instances, convert_other
from medcnn.ingest.dicom_headers import is_projection, read_entry
from medcnn.ingest.discovery import Candidate, Skipped, discover, load_subject_table, parse_inputs
from medcnn.ingest.manifest import write_files, write_manifest, write_quarantine
from medcnn.io.deid import resolve_secret, write_mapping
from medcnn.io.dicom_series import AssemblyOptions
from medcnn.io.limits import Limits

log = logging.getLogger(__name__)


class InputError(ConfigError):
    """Something the user can fix in the inputs or the config (exit status 2, no traceback)."""


def _read_table(path: Path, what: str) -> pd.DataFrame:
    """A CSV/TSV read as text, or an :class:`InputError` saying what to fix."""
    if not path.is_file():
        raise InputError(f"{what} {path} not found: fix the path in the config")
    sep = "\t" if path.suffix.lower() in (".tsv", ".tab") else ","
    try:
        return pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False)
    except Exception as exc:  # noqa: BLE001 - any parse failure is the user's to fix
        raise InputError(
            f"{what} {path} cannot be read as {'TSV' if sep != ',' else 'CSV'} "
            f"({type(exc).__name__}): save it as plain UTF-8 text with a header row"
        ) from None


def load_labels(path: Path, column: str, columns: list[str]) -> dict[str, dict[str, str]]:
    """Read a labels table (CSV, or TSV by extension) into ``{key value: {label: value}}``.

    Raises:
        InputError: the table is missing or unreadable, lacks a column, or a key repeats.
    """
    table = _read_table(path, "labels table")
    missing = [c for c in [column, *columns] if c not in table.columns]
    if missing:
        raise InputError(
            f"{path}: labels table lacks columns {missing} (it has {list(table.columns)}): "
            "fix labels.column/labels.columns in the config or the table's header"
        )
    dupes = table[column][table[column].duplicated()].unique()
    if len(dupes):
        # The key values may be identifiers themselves: report how many, not which.
        raise InputError(f"{path}: {len(dupes)} key value(s) of column {column!r} repeat")
    return {row[column]: {c: row[c] for c in columns} for _, row in table.iterrows()}


def _check_inputs(specs: list[Any]) -> None:
    for index, spec in enumerate(specs):
        if not spec.path.is_dir():
            raise InputError(
                f"inputs[{index}]: folder {spec.path} not found: fix the path in the config"
            )
        if not any(spec.path.iterdir()):
            raise InputError(
                f"inputs[{index}]: folder {spec.path} is empty: put the scans there or "
                "remove it from the config"
            )


def _context(config: dict[str, Any], folders: list[Path]) -> Context:
    label_cfg = config["labels"]
    labels: dict[str, dict[str, str]] = {}
    if label_cfg["path"]:
        labels = load_labels(Path(label_cfg["path"]), label_cfg["column"], label_cfg["columns"])
    results = Path(config["results"])
    return Context(
        config=config,
        results=results,
        out=results / "ingest",
        secret=resolve_secret(config["deid"]["secret"]),
        options=AssemblyOptions(uneven_spacing=config["ingest"]["uneven_spacing"]),
        labels=labels,
        folders=folders,
        limits=Limits.from_config(config["ingest"]["limits"]),
    )


def run_ingest(config: dict[str, Any]) -> tuple[int, int]:
    """Convert every image below ``config['inputs']`` and write the manifest.

    Args:
        config: the validated workflow configuration (defaults filled in).

    Returns:
        (images or volumes written to the manifest, files quarantined).

    Raises:
        InputError: an input folder is missing or empty, the labels or an input table is
            missing, unreadable or lacks a column, or no file at all could be converted.
    """
    with _quiet_libraries():
        return _run(config)


@contextlib.contextmanager
def _quiet_libraries() -> Iterator[None]:
    """Silence pydicom's log and every library warning for the run.

    They quote header values and paths (names, IDs, folders outside the inputs) and would
    reach the log unscrubbed; ingest reports each problem itself, scrubbed. Decoders'
    warnings are still recorded where they count as errors (JPEG 2000, JPEG-LS).
    """
    settings = pydicom.config.settings
    mode = settings.reading_validation_mode
    logger = logging.getLogger("pydicom")
    disabled = logger.disabled
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            settings.reading_validation_mode = pydicom.config.IGNORE
            logger.disabled = True
            yield
    finally:
        settings.reading_validation_mode = mode
        logger.disabled = disabled


def _run(config: dict[str, Any]) -> tuple[int, int]:
    try:
        specs = parse_inputs(config["inputs"])
    except ValueError as exc:
        raise InputError(f"{exc}: fix the pattern in the config") from None
    _check_inputs(specs)
    ctx = _context(config, [s.path for s in specs])
    tables = {}
    for spec in specs:
        if spec.table is not None:
            try:
                tables[spec.table] = load_subject_table(spec.table, spec)
            except (OSError, ValueError) as exc:
                raise InputError(f"{exc}: fix the input table or its path in the config") from None
    entries, others = _discover(specs, ctx, tables)
    _convert_dicom(entries, ctx)
    by_role: dict[str, list[Candidate]] = defaultdict(list)
    for cand in others:
        by_role[cand.spec.role(cand.relative) if cand.spec is not None else "image"].append(cand)
    for cand in by_role["image"] + by_role["mask"]:
        convert_other(cand, ctx, tables)
    convert_instances(by_role["instances"], ctx, tables)
    return _finish(ctx)


def _discover(
    specs: list[Any], ctx: Context, tables: dict[Path, dict[str, dict[str, str]]]
) -> tuple[list[Entry], list[Candidate]]:
    """Walk the inputs and read DICOM headers: (DICOM entries, other scan files)."""
    entries: list[Entry] = []
    others: list[Candidate] = []
    seen_sop: dict[str, Path] = {}
    skipped: list[Skipped] = []
    ingest = ctx.config["ingest"]
    for cand in discover(specs, ingest["min_bytes"], skipped, ingest["follow_links"]):
        ctx.offered(cand.path)
        if cand.kind in ("nifti", "image"):
            others.append(cand)
            continue
        entry = None
        with ctx.isolated([cand.path], "header"):
            entry = read_entry(cand, ctx, seen_sop, tables)
        if entry is not None:
            entries.append(entry)
    for item in skipped:
        ctx.skip(item.path, "discover", item.reason)
    return entries, others


def _convert_dicom(entries: list[Entry], ctx: Context) -> None:
    """Group entries into series and convert them: images first, then label series."""
    by_series: dict[tuple[str, str, str], list[Entry]] = defaultdict(list)
    for entry in entries:
        by_series[(entry.patient_id, entry.study_uid, entry.series_uid)].append(entry)
    label_series = re.compile(ctx.config["ingest"].get("label_series") or r"(?!)")
    ordered = sorted(by_series.values(), key=lambda members: members[0].sop_uid)
    label_groups = []
    for members in ordered:
        members.sort(key=lambda e: (e.instance, e.sop_uid))
        projection = is_projection(members)
        if (
            not projection
            and members[0].description
            and label_series.search(members[0].description)
        ):
            label_groups.append(members)  # after the images, to check their grid
        elif projection:
            convert_projections(members, ctx)
        else:
            convert_volumes(members, ctx)
    for members in label_groups:
        convert_volumes(members, ctx, role="mask")


def _finish(ctx: Context) -> tuple[int, int]:
    """Write the manifest, the quarantine and file tables, the batches and the mapping."""
    config = ctx.config
    write_manifest(ctx.out / "manifest.tsv", ctx.rows, config["labels"]["columns"])
    quarantined = ctx.quarantine_rows()
    write_quarantine(ctx.out / "quarantine.tsv", quarantined)
    files = ctx.file_rows()
    write_files(ctx.out / "files.tsv", [(f.file, f.fate, f.stage, f.detail) for f in files])
    write_batches(
        ctx.out,
        sorted({r["subject"] for r in ctx.rows}),
        config["batches"]["max_subjects"],
        config["batches"]["min_batches"],
    )
    if config["deid"]["mapping"]:
        write_mapping(Path(config["deid"]["mapping"]), ctx.mapping)
    counts = {fate: sum(f.fate == fate for f in files) for fate in ("converted", "quarantined")}
    log.info(
        "ingest: %d images/volumes of %d subjects from %d files found: %d converted, "
        "%d quarantined, %d skipped (see files.tsv)",
        len(ctx.rows),
        len({r["subject"] for r in ctx.rows}),
        len(files),
        counts["converted"],
        counts["quarantined"],
        len(files) - counts["converted"] - counts["quarantined"],
    )
    if not ctx.rows:
        raise InputError(
            f"no scan could be converted from the {len(files)} files found below the inputs "
            f"({counts['quarantined']} quarantined, the others skipped): see "
            f"{ctx.out / 'files.tsv'} for each file's reason, and check the inputs in the config"
        )
    return len(ctx.rows), len(quarantined)
