"""The cohort manifest: one row per image (2D) or volume (3D/4D), the contract after ingest.

Columns (tab-separated, in this order; then the columns added later; then one column per
configured label):

=============  ==============================================================================
subject        pseudonymous subject ID (``sub-`` + keyed hash of PatientID)
study          pseudonymous study ID (``ses-`` + keyed hash of StudyInstanceUID)
series         image/series ID, unique within the subject (``<modality>-<hash>``, then
               ``-NNN`` for one image of a multi-image radiograph series or one part of a
               split series)
modality       DICOM Modality (CR, DX, CT, MR, ...), or the input's ``modality`` for files
               that are not DICOM
dims           spatial dimensions of the image: 2 (one slice) or 3
shape          voxels along i, j, k, ``x``-separated (i = columns, j = rows), then the
               number of volumes t for a time series (4D)
spacing        mm along i, j, k, ``x``-separated (column lengths of the affine)
photometric    PhotometricInterpretation of the source
view           ViewPosition (PA, AP, LL, ...) or empty
path           the NIfTI image, relative to the results folder
sidecar        its JSON sidecar, relative to the results folder
warnings       ``;``-separated ingest warnings, empty when none
volumes        (added) number of volumes t: 1, or more for a time series
channels       (added) 1 for greyscale, 3 for RGB (DICOM colour as NIfTI RGB24 under
               ``ingest.colour: rgb24``, other RGB as NIfTI vector ``(i, j, k, t, 3)``)
source         (added) what the image was made from: ``dicom``, ``nifti`` or ``image``
role           (added) ``image``; ``mask`` for an integer label map (a label series, or a
               file matching its input's ``masks``); ``instances`` for an instance label map
               (0 background, 1..N one id per object) merged from one-mask-per-object files
description    (added) DICOM SeriesDescription, or the input pattern's ``series`` group for
               other files (empty when none; file names are never recorded)
=============  ==============================================================================

Files set aside go to ``quarantine.tsv`` with columns ``file`` (the path below the input
folder, prefixed with the folder's name, each component that is not a plain scan-file name
replaced by a keyed pseudonym unless ``ingest.show_paths``), ``stage`` (``header``,
``group``, ``decode``, ``identify``, ``instances``) and ``reason``.

Every file found below the inputs has one row in ``files.tsv``: ``file`` (shown as above),
``fate`` (``converted``, ``quarantined`` or ``skipped``), ``stage`` and ``detail`` (the
subject/series it went into, or the reason).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

# pandas is imported only where a table is read (or a row holds a value the plain writer
# below does not format as pandas would): importing it costs ingest ~0.2 s at every start.

MANIFEST_COLUMNS = (
    "subject",
    "study",
    "series",
    "modality",
    "dims",
    "shape",
    "spacing",
    "photometric",
    "view",
    "path",
    "sidecar",
    "warnings",
)
#: Columns added after the walking skeleton; written after MANIFEST_COLUMNS, before labels.
EXTRA_COLUMNS = ("volumes", "channels", "source", "role", "description")
#: Values of the ``role`` column.
ROLES = ("image", "mask", "instances")
#: File name of a subject's own manifest, ``results/ingest/{subject}/manifest.tsv``.
SUBJECT_MANIFEST = "manifest.tsv"
QUARANTINE_COLUMNS = ("file", "stage", "reason")
FILES_COLUMNS = ("file", "fate", "stage", "detail")
_SHAPE = re.compile(r"^\d+x\d+x\d+(x\d+)?$")
_SPACING = re.compile(r"^[0-9.eE+-]+x[0-9.eE+-]+x[0-9.eE+-]+$")
_ONE_LINE = re.compile(r"[\t\r\n]+")


def validate_manifest(frame: pd.DataFrame) -> list[str]:
    """Problems with manifest rows (values as text, as read back); empty when valid."""
    records = frame.astype(str).to_dict("records")
    return validate_rows(records, list(frame.columns), list(frame.index))


def validate_rows(
    rows: Sequence[dict[str, str]], columns: list[str], index: Sequence[Any] | None = None
) -> list[str]:
    """:func:`validate_manifest` on rows of text (``index``: the row labels shown)."""
    problems = []
    missing = [c for c in MANIFEST_COLUMNS if c not in columns]
    if missing:
        return [f"missing columns {missing}"]
    labels = range(len(rows)) if index is None else index
    for label, row in zip(labels, rows, strict=True):
        where = f"row {label} ({row['subject']}/{row['series']})"
        if not row["subject"].startswith("sub-") or not row["study"].startswith("ses-"):
            problems.append(f"{where}: subject/study are not pseudonyms")
        if row["dims"] not in ("2", "3"):
            problems.append(f"{where}: dims {row['dims']!r} is not 2 or 3")
        if not _SHAPE.match(row["shape"]):
            problems.append(f"{where}: shape {row['shape']!r} is not i x j x k[x t]")
        elif (row["shape"].split("x")[2] == "1") != (row["dims"] == "2"):
            problems.append(f"{where}: dims {row['dims']} does not match shape {row['shape']}")
        if not _SPACING.match(row["spacing"]) or any(
            float(v) <= 0 for v in row["spacing"].split("x")
        ):
            problems.append(f"{where}: spacing {row['spacing']!r} is not three positive mm")
        if "role" in columns and row["role"] not in ROLES:
            problems.append(f"{where}: role {row['role']!r} is not one of {ROLES}")
        if not row["path"].endswith(".nii.gz") or not row["sidecar"].endswith(".json"):
            problems.append(f"{where}: path/sidecar are not .nii.gz/.json")
    if len({(row["subject"], row["series"]) for row in rows}) < len(rows):
        problems.append("series IDs repeat within a subject")
    return problems


def _plain(rows: Iterable[dict[str, Any]], columns: Sequence[str]) -> list[list[str]] | None:
    """The rows as text cells, as ``pandas.DataFrame(rows, columns).to_csv`` writes them,
    when every cell is a ``str`` or an ``int``; None otherwise (pandas then writes them: a
    missing cell or a float is formatted by the column's dtype there)."""
    table = []
    for row in rows:
        cells = []
        for column in columns:
            value = row.get(column, _plain)
            kind = type(value)
            if kind is str:
                cells.append(value)
            elif kind is int:
                cells.append(str(value))
            else:
                return None
        table.append(cells)
    return table


def _tsv(columns: Sequence[str], table: Iterable[list[str]]) -> str:
    """Tab-separated text as pandas' ``to_csv(sep="\t", index=False)`` writes it."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter="\t", lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow(columns)
    writer.writerows(table)
    return out.getvalue()


def write_manifest(path: Path, rows: list[dict], label_columns: list[str]) -> None:
    """Write the manifest, sorted by subject, study and series.

    Raises:
        ValueError: a row breaks the documented format (a bug in ingest, never bad input).
    """
    fixed = list(MANIFEST_COLUMNS) + list(EXTRA_COLUMNS)
    columns = fixed + [c for c in label_columns if c not in fixed]
    table = _plain(rows, columns)
    if table is None:
        _write_manifest_pandas(path, rows, columns)
        return
    at = {name: i for i, name in enumerate(columns)}
    order = sorted(
        range(len(table)),
        key=lambda i: (table[i][at["subject"]], table[i][at["study"]], table[i][at["series"]]),
    )
    table = [table[i] for i in order]
    records = [dict(zip(columns, cells, strict=True)) for cells in table]
    problems = validate_rows(records, columns, order)
    if problems:
        raise ValueError(f"{path}: invalid manifest rows: " + "; ".join(problems[:5]))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(_tsv(columns, table), encoding="utf-8")
    # One manifest per subject too, rewritten only when its rows change: per-subject jobs
    # depend on it, so a new batch of scans re-runs the new subjects and no others.
    by_subject: dict[str, list[list[str]]] = {}
    for cells in table:
        by_subject.setdefault(cells[at["subject"]], []).append(cells)
    for subject, rows_of in by_subject.items():
        _write_subject_manifest(path.parent / subject / SUBJECT_MANIFEST, _tsv(columns, rows_of))


def _write_subject_manifest(own: Path, text: str) -> None:
    if not own.exists() or own.read_text() != text:
        own.parent.mkdir(parents=True, exist_ok=True)
        own.write_text(text)


def _write_manifest_pandas(path: Path, rows: list[dict], columns: list[str]) -> None:
    """:func:`write_manifest` through pandas (rows with cells the plain writer leaves)."""
    import pandas as pd

    frame = pd.DataFrame(rows, columns=columns)
    frame = frame.sort_values(["subject", "study", "series"], kind="stable")
    problems = validate_manifest(frame)
    if problems:
        raise ValueError(f"{path}: invalid manifest rows: " + "; ".join(problems[:5]))
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, sep="\t", index=False)
    # One manifest per subject too, rewritten only when its rows change: per-subject jobs
    # depend on it, so a new batch of scans re-runs the new subjects and no others.
    for subject, rows_of in frame.groupby("subject", sort=False):
        own = path.parent / str(subject) / SUBJECT_MANIFEST
        _write_subject_manifest(own, rows_of.to_csv(sep="\t", index=False))


def read_manifest(path: Path) -> pd.DataFrame:
    """Read a manifest; every column as text so IDs are never turned into numbers.

    Raises:
        ValueError: when a required column is missing.
    """
    import pandas as pd

    frame = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    missing = [c for c in MANIFEST_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: manifest lacks columns {missing}")
    return frame


def write_quarantine(path: Path, rows: list[tuple[str, str, str]]) -> None:
    """Write ``quarantine.tsv`` (file, stage, reason); written even when empty, with its
    header."""
    _write_table(path, rows, QUARANTINE_COLUMNS)


def write_files(path: Path, rows: list[tuple[str, str, str, str]]) -> None:
    """Write ``files.tsv`` (file, fate, stage, detail): one row per file found."""
    _write_table(path, rows, FILES_COLUMNS)


def _write_table(path: Path, rows: list[tuple[str, ...]], columns: tuple[str, ...]) -> None:
    if all(type(cell) is str for row in rows for cell in row):
        # Tabs and newlines in a reason would break the table; names are never raw bytes here.
        ordered = sorted(rows, key=lambda row: row[0])  # stable, as pandas' kind="stable"
        table = [[_ONE_LINE.sub(" ", cell) for cell in row] for row in ordered]
        path.parent.mkdir(parents=True, exist_ok=True)
        text = _tsv(columns, table)
        path.write_bytes(text.encode("utf-8", errors="replace"))
        return
    import pandas as pd

    frame = pd.DataFrame(rows, columns=list(columns)).sort_values("file", kind="stable")
    # Tabs and newlines in a reason would break the table; names are never raw bytes here.
    frame = frame.replace({r"[\t\r\n]+": " "}, regex=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, sep="\t", index=False, encoding="utf-8", errors="replace")


def read_files(path: Path) -> pd.DataFrame:
    """Read ``files.tsv``."""
    import pandas as pd

    return pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)


def read_quarantine(path: Path) -> pd.DataFrame:
    """Read ``quarantine.tsv``."""
    import pandas as pd

    return pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
