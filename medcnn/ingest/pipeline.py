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
from typing import TYPE_CHECKING, Any

import pydicom

if TYPE_CHECKING:
    import pandas as pd

from medcnn.config import ConfigError
from medcnn.ingest.batches import write_batches
from medcnn.ingest.cache import ConvertCache
from medcnn.ingest.context import Context, Entry
from medcnn.ingest.convert_other import convert_instances, convert_other, other_ids
from medcnn.ingest.dicom_headers import is_projection
from medcnn.ingest.discovery import Candidate, Skipped, discover, load_subject_table, parse_inputs
from medcnn.ingest.manifest import write_files, write_manifest, write_quarantine
from medcnn.ingest.passes import (
    captured,
    convert_labels,
    convert_series,
    grids_digest,
    read_headers,
)
from medcnn.ingest.workers import Workers, resolve_workers
from medcnn.io.deid import resolve_secret, write_mapping
from medcnn.io.dicom_series import AssemblyOptions
from medcnn.io.limits import Limits
from medcnn.io.nifti import NIBABEL

log = logging.getLogger(__name__)


class InputError(ConfigError):
    """Something the user can fix in the inputs or the config (exit status 2, no traceback)."""


def _read_table(path: Path, what: str) -> pd.DataFrame:
    """A CSV/TSV read as text, or an :class:`InputError` saying what to fix."""
    if not path.is_file():
        raise InputError(f"{what} {path} not found: fix the path in the config")
    sep = "\t" if path.suffix.lower() in (".tsv", ".tab") else ","
    try:
        import pandas as pd  # here only: ingest's start does not pay for pandas

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


def run_ingest(config: dict[str, Any], threads: int | None = None) -> tuple[int, int]:
    """Convert every image below ``config['inputs']`` and write the manifest.

    Args:
        config: the validated workflow configuration (defaults filled in).
        threads: the job's threads (``medcnn ingest --threads``): the worker processes when
            ``ingest.workers`` is 0; None for ``resources.ingest.threads``.

    Returns:
        (images or volumes written to the manifest, files quarantined).

    Raises:
        InputError: an input folder is missing or empty, the labels or an input table is
            missing, unreadable or lacks a column, or no file at all could be converted.
    """
    with _quiet_libraries():
        return _run(config, threads)


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


def _run(config: dict[str, Any], threads: int | None) -> tuple[int, int]:
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
    count = resolve_workers(
        config["ingest"]["workers"], threads, config["resources"]["ingest"]["threads"]
    )
    cache = ConvertCache.load(ctx, tables)
    with Workers(count, {"ctx": ctx, "tables": tables}, preload=[NIBABEL]) as workers:
        candidates, others = _discover(specs, ctx)
        cache.stat([c.path for c in candidates])  # before the files are read
        entries = _read_changed(candidates, ctx, workers, cache)
        _convert_dicom(entries, ctx, workers, cache)
    _convert_others(others, ctx, tables, cache)
    cache.save()
    return _finish(ctx)


def _discover(specs: list[Any], ctx: Context) -> tuple[list[Candidate], list[Candidate]]:
    """Walk the inputs: (DICOM candidates, other scan files), each offered to ``ctx``."""
    dicom: list[Candidate] = []
    others: list[Candidate] = []
    skipped: list[Skipped] = []
    ingest = ctx.config["ingest"]
    for cand in discover(specs, ingest["min_bytes"], skipped, ingest["follow_links"]):
        ctx.offered(cand.path)
        (others if cand.kind in ("nifti", "image") else dicom).append(cand)
    for item in skipped:
        ctx.skip(item.path, "discover", item.reason)
    return dicom, others


def _read_changed(
    candidates: list[Candidate], ctx: Context, workers: Workers, cache: ConvertCache
) -> list[Entry]:
    """The header pass over every file but those of series unchanged since the last run,
    which are restored from ``cache`` unread. A file read now that belongs to one of them
    (a slice added to a series) or repeats one of its SOP instances makes that series
    read again, so that it is grouped and checked as a whole."""
    unread = cache.unchanged_series([c.path for c in candidates])
    while True:
        skipped = {path for _, files in unread.values() for path in files.values()}
        entries = read_headers([c for c in candidates if c.path not in skipped], ctx, workers)
        groups = {cache.group_key(e.patient_id, e.study_uid, e.series_uid) for e in entries}
        sops = {cache.sop_key(e.sop_uid) for e in entries if e.sop_uid}
        clashing = [
            key
            for key, (record, _) in unread.items()
            if record.group in groups or not sops.isdisjoint(record.sops)
        ]
        if not clashing:
            break
        for key in clashing:
            del unread[key]
    for key, (record, files) in unread.items():
        cache.restore_unread(key, record, files)
    if unread:
        log.info("ingest: %d series unchanged since the last run: headers not read", len(unread))
    return entries


def _convert_dicom(
    entries: list[Entry], ctx: Context, workers: Workers, cache: ConvertCache
) -> None:
    """Group entries into series and convert them: images first (in parallel), then label
    series (in this process: each is checked against the images of its subject)."""
    by_series: dict[tuple[str, str, str], list[Entry]] = defaultdict(list)
    for entry in entries:
        by_series[(entry.patient_id, entry.study_uid, entry.series_uid)].append(entry)
    label_series = re.compile(ctx.config["ingest"].get("label_series") or r"(?!)")
    ordered = sorted(by_series.values(), key=lambda members: members[0].sop_uid)
    images: list[tuple[str, list[Entry]]] = []
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
        else:
            images.append(("projections" if projection else "volumes", members))
    convert_series(images, ctx, workers, cache)
    convert_labels(label_groups, ctx, cache)
    if cache.hits:
        log.info(
            "ingest: %d series unchanged since the last run, not decoded again (%d converted)",
            cache.hits,
            cache.misses,
        )


def _convert_others(
    others: list[Candidate],
    ctx: Context,
    tables: dict[Path, dict[str, dict[str, str]]],
    cache: ConvertCache,
) -> None:
    """NIfTI and 2D image files (images, then masks), then instance masks, each restored
    from ``cache`` when unchanged. Masks are checked against the images' grids, so theirs
    are restored only when no grid changed."""
    by_role: dict[str, list[Candidate]] = defaultdict(list)
    for cand in others:
        by_role[cand.spec.role(cand.relative) if cand.spec is not None else "image"].append(cand)
    for role in ("image", "mask"):
        extra = "" if role == "image" else grids_digest(_all_grids(ctx))
        for cand in by_role[role]:
            key = cache.key("other", role, str(cand.path))
            paths = [cand.path]
            if cache.restore(key, paths, extra):
                _other_mapping([cand], ctx, tables)
                continue
            result = captured(ctx, paths, lambda c=cand: convert_other(c, ctx, tables))
            cache.store(key, paths, result, extra)
    files = by_role["instances"]
    if files:
        key = cache.key("instances", *sorted(str(c.path) for c in files))
        paths = [c.path for c in files]
        extra = grids_digest(_all_grids(ctx))
        if cache.restore(key, paths, extra):
            _other_mapping(files, ctx, tables)
        else:
            result = captured(ctx, paths, lambda: convert_instances(files, ctx, tables))
            cache.store(key, paths, result, extra)


def _all_grids(ctx: Context) -> list:
    return [grid for key in sorted(ctx.grids) for grid in ctx.grids[key]]


def _other_mapping(
    cands: list[Candidate], ctx: Context, tables: dict[Path, dict[str, dict[str, str]]]
) -> None:
    """The mapping rows of restored non-DICOM files, as their conversion adds them."""
    for cand in cands:
        with contextlib.suppress(ValueError):
            other_ids(cand, ctx, tables)


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
