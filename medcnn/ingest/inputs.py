"""The configured input folders (``config['inputs']``) and who a non-DICOM file belongs to.

Each entry of ``inputs`` is a folder, optionally with a ``pattern`` or ``table`` that says
the subject (and study, label key, series) of each non-DICOM file, its ``modality``, and
``masks`` / ``instances`` patterns that give each file its *role*: ``image`` (the default),
``mask`` (a label map) or ``instances`` (one binary mask per object, merged per subject and
study at ingest).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd


NIFTI_SUFFIXES = (".nii", ".nii.gz")
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"})


@dataclass(frozen=True)
class InputSpec:
    """One entry of ``config['inputs']``.

    Attributes:
        path: the folder.
        pattern: regular expression searched in each non-DICOM file's path relative to
            ``path`` (POSIX separators), with named groups ``subject`` (required), ``study``
            and ``key`` (optional); None when not configured.
        table: CSV/TSV with one row per file: its path relative to ``path``, the subject,
            and optionally the study, label key, view, sex and age, in the columns
            ``columns`` names; None when not configured.
        modality: the modality recorded for non-DICOM files of this folder.
        masks: regular expression searched in the relative path: matching files are label
            maps (role ``mask``); None when not configured.
        instances: regular expression searched in the relative path: matching files hold one
            binary mask of one object each (role ``instances``); None when not configured.
    """

    path: Path
    pattern: re.Pattern[str] | None = None
    table: Path | None = None
    modality: str = "OT"
    masks: re.Pattern[str] | None = None
    instances: re.Pattern[str] | None = None
    columns: tuple[tuple[str, str], ...] = ()

    def column(self, field: str) -> str:
        """The table's column that holds ``field`` (``file``, ``subject``, ``study``, ``key``,
        ``view``, ``sex``, ``age``)."""
        return dict(self.columns).get(field, field)

    def role(self, relative: str) -> str:
        """``instances``, ``mask`` or ``image``: what a file at ``relative`` holds."""
        if self.instances is not None and self.instances.search(relative):
            return "instances"
        if self.masks is not None and self.masks.search(relative):
            return "mask"
        return "image"


def _compile(item: dict[str, Any], key: str) -> re.Pattern[str] | None:
    if not item.get(key):
        return None
    try:
        return re.compile(item[key])
    except re.error as exc:
        raise ValueError(f"inputs: bad {key} pattern {item[key]!r}: {exc}") from exc


def parse_inputs(items: list[Any]) -> list[InputSpec]:
    """Turn ``config['inputs']`` (strings or ``{path, pattern, table, modality, masks,
    instances}``) into specs.

    Raises:
        ValueError: a pattern that does not compile or lacks the ``subject`` group.
    """
    specs = []
    for item in items:
        if isinstance(item, str):
            specs.append(InputSpec(Path(item)))
            continue
        pattern = None
        if item.get("pattern"):
            try:
                pattern = re.compile(item["pattern"])
            except re.error as exc:
                raise ValueError(f"inputs: bad pattern {item['pattern']!r}: {exc}") from exc
            if "subject" not in pattern.groupindex:
                raise ValueError(f"inputs: pattern {item['pattern']!r} has no (?P<subject>...)")
        table = Path(item["table"]) if item.get("table") else None
        columns = tuple(sorted((item.get("columns") or {}).items()))
        specs.append(
            InputSpec(
                Path(item["path"]),
                pattern,
                table,
                item.get("modality") or "OT",
                masks=_compile(item, "masks"),
                instances=_compile(item, "instances"),
                columns=columns,
            )
        )
    return specs


@dataclass(frozen=True)
class Candidate:
    """A file that may be a scan.

    Attributes:
        path: the file.
        kind: ``dicom``, ``nifti``, ``image`` or ``other``.
        spec: the input folder it was found under.
    """

    path: Path
    kind: str
    spec: InputSpec | None = None

    @property
    def relative(self) -> str:
        """The path below its input folder, with ``/`` separators."""
        if self.spec is None:
            return self.path.name
        try:
            return self.path.relative_to(self.spec.path).as_posix()
        except ValueError:
            return self.path.name


#: What an input table may say of a file, beyond its path and subject; the DICOM attribute
#: each becomes in the sidecar (the view then reaches the manifest and the subgroups).
TABLE_FIELDS = {
    "study": None,
    "key": None,
    "view": "ViewPosition",
    "sex": "PatientSex",
    "age": "PatientAge",
}
#: Fields a table must have.
REQUIRED_FIELDS = ("file", "subject")


def table_columns(spec: InputSpec, available: list[str]) -> tuple[dict[str, str], list[str]]:
    """The table columns of each field of ``spec``, and the configured columns it lacks.

    A field's column named in ``inputs[].columns`` must exist; one left at its default name
    (the field's own: ``file``, ``subject``, ``view``, ...) is used when present.

    Returns:
        (``{field: column}`` of the fields found, ``["field -> column", ...]`` missing).
    """
    found, missing = {}, []
    for field in (*REQUIRED_FIELDS, *TABLE_FIELDS):
        column = spec.column(field)
        if column in available:
            found[field] = column
        elif field in REQUIRED_FIELDS or column != field:
            missing.append(f"{field} -> {column!r}")
    return found, missing


def read_table(path: Path) -> pd.DataFrame:
    """A CSV (or TSV by extension) read as text.

    Raises:
        ValueError: the file is missing or cannot be parsed, naming it.
    """
    if not path.is_file():
        raise ValueError(f"{path}: input table not found")
    sep = "\t" if path.suffix.lower() in (".tsv", ".tab") else ","
    try:
        import pandas as pd  # here only: ingest's start does not pay for pandas

        return pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False)
    except Exception as exc:  # noqa: BLE001 - any parse failure is the user's to fix
        raise ValueError(
            f"{path}: input table cannot be read ({type(exc).__name__}): save it as plain "
            "UTF-8 CSV/TSV with a header row"
        ) from None


def load_subject_table(path: Path, spec: InputSpec | None = None) -> dict[str, dict[str, Any]]:
    """Read an input's table: ``{file: {subject, study, key, view, sex, age, "row"}}``, the
    file relative to the folder, ``row`` the whole row (its label columns are joined to the
    image when ``labels.path`` is not set).

    Raises:
        ValueError: the table is missing or unreadable, or lacks a column it needs (naming
            the field and the column looked for).
    """
    spec = spec or InputSpec(path.parent, table=path)
    table = read_table(path)
    found, missing = table_columns(spec, list(table.columns))
    if missing:
        raise ValueError(
            f"{path}: input table lacks columns {missing} (it has {list(table.columns)}); "
            "name them in inputs[].columns"
        )
    out: dict[str, dict[str, Any]] = {}
    for row in table.to_dict("records"):
        entry = {field: row[column] for field, column in found.items() if field != "file"}
        entry["row"] = row
        out[str(row[found["file"]]).replace("\\", "/")] = entry
    return out


def check_table(spec: InputSpec, label_columns: list[str]) -> list[str]:
    """What ingest would reject in an input's table, as messages naming the table and the
    column: unreadable, lacking a column (``label_columns`` too: the labels read from this
    table when no labels table is configured), files it lists that are not in the folder
    (the first three named, and how many in all), rows without a subject."""
    assert spec.table is not None
    try:
        table = read_table(spec.table)
    except ValueError as exc:
        return [str(exc)]
    columns = list(table.columns)
    found, missing = table_columns(spec, columns)
    missing += [f"label {c!r}" for c in label_columns if c not in columns]
    problems = []
    if missing:
        problems.append(
            f"{spec.table}: input table lacks columns {missing} (it has {columns}); "
            "name them in inputs[].columns (labels.columns for labels)"
        )
    if "file" in found:
        files = [f for f in table[found["file"]] if f]
        # Rows by line number, not by name: file names often carry the patient's ID.
        absent = [
            i + 2 for i, f in enumerate(table[found["file"]]) if f and not (spec.path / f).is_file()
        ]
        if absent:
            problems.append(
                f"{spec.table}: {len(absent)} of {len(files)} files in column "
                f"{found['file']!r} not found under {spec.path} (lines {absent[:5]})"
            )
    if "subject" in found:
        empty = int((table[found["subject"]].str.strip() == "").sum())
        if empty:
            problems.append(
                f"{spec.table}: {empty} rows with an empty subject column {found['subject']!r}"
            )
    return problems


def identify(candidate: Candidate, tables: dict[Path, dict[str, dict[str, Any]]]) -> dict:
    """Subject, study and label key of a non-DICOM file from its input's pattern or table.

    Returns:
        ``{"subject", "study", "key", "description"}`` and, from a table, the ``view``,
        ``sex`` and ``age`` it gives and its whole ``row`` (original values, not yet
        pseudonymised; ``description`` is the pattern's optional ``series`` group, else
        empty: file names are never recorded, they may hold identifiers). Without a
        pattern or table the subject is the first folder below the input folder (or the file
        name without extension for files directly in it), the study is ``1``, and the key
        is the relative path, matching a labels table that lists files.

    Raises:
        ValueError: the file does not match the pattern or is not in the table.
    """
    spec = candidate.spec or InputSpec(candidate.path.parent)
    relative = candidate.relative
    if spec.table is not None:
        row = tables[spec.table].get(relative)
        if row is None or not row.get("subject"):
            raise ValueError(f"not listed (with a subject) in the input table {spec.table.name}")
        return {
            "subject": row["subject"],
            "study": row.get("study") or "1",
            "key": row.get("key") or relative,
            "description": "",
            **{f: row[f] for f in ("view", "sex", "age") if row.get(f)},
            "row": row.get("row", {}),
        }
    if spec.pattern is not None:
        match = spec.pattern.search(relative)
        if match is None or not match.group("subject"):
            raise ValueError(f"path does not match the input pattern {spec.pattern.pattern!r}")
        groups = match.groupdict()
        return {
            "subject": groups["subject"],
            "study": groups.get("study") or "1",
            "key": groups.get("key") or relative,
            "description": groups.get("series") or "",
        }
    parts = relative.split("/")
    stem = parts[0] if len(parts) > 1 else _stem(parts[0])
    return {"subject": stem, "study": "1", "key": relative, "description": ""}


def _stem(name: str) -> str:
    for suffix in (".nii.gz", *NIFTI_SUFFIXES, *IMAGE_SUFFIXES):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def check_inputs(config: dict[str, Any]) -> list[str]:
    """What ingest would reject in a validated config's inputs, before it runs: folders that
    do not exist, bad patterns, input tables (:func:`check_table`) and the labels table's
    columns. Each message names the file and the column or key; empty when all is well."""
    try:
        specs = parse_inputs(config["inputs"])
    except ValueError as exc:
        return [str(exc)]
    labels = config.get("labels", {})
    demo = config.get("demo", {})
    # The demo's folders are written by the workflow itself when missing.
    generated = Path(demo.get("out", "demo")).resolve() if demo.get("enabled") else None
    problems = []
    for index, spec in enumerate(specs):
        if generated is not None and spec.path.resolve().is_relative_to(generated):
            continue
        if not spec.path.is_dir():
            problems.append(f"inputs[{index}]: folder {spec.path} not found")
        elif spec.table is not None:
            problems += check_table(spec, [] if labels.get("path") else labels.get("columns", []))
    if labels.get("path") and not (
        generated is not None and Path(labels["path"]).resolve().is_relative_to(generated)
    ):
        path = Path(labels["path"])
        try:
            table = read_table(path)
        except ValueError as exc:
            return [*problems, str(exc).replace("input table", "labels table")]
        wanted = [labels.get("column", ""), *labels.get("columns", [])]
        missing = [c for c in wanted if c not in table.columns]
        if missing:
            problems.append(
                f"{path}: labels table lacks columns {missing} (it has {list(table.columns)}): "
                "fix labels.column/labels.columns"
            )
    return problems
