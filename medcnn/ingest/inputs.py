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
from typing import Any

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
        table: CSV/TSV with columns ``file`` (relative to ``path``), ``subject`` and
            optionally ``study`` and ``key``; None when not configured.
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
        specs.append(
            InputSpec(
                Path(item["path"]),
                pattern,
                table,
                item.get("modality") or "OT",
                masks=_compile(item, "masks"),
                instances=_compile(item, "instances"),
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


def load_subject_table(path: Path) -> dict[str, dict[str, str]]:
    """Read an input's table: ``{file: {subject, study, key}}`` (file relative to the folder).

    Raises:
        ValueError: the table lacks the ``file`` or ``subject`` column.
    """
    sep = "\t" if path.suffix.lower() in (".tsv", ".tab") else ","
    table = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False)
    missing = [c for c in ("file", "subject") if c not in table.columns]
    if missing:
        raise ValueError(f"{path}: input table lacks columns {missing}")
    return {
        row["file"]: {k: row[k] for k in ("subject", "study", "key") if k in table.columns}
        for _, row in table.iterrows()
    }


def identify(candidate: Candidate, tables: dict[Path, dict[str, dict[str, str]]]) -> dict:
    """Subject, study and label key of a non-DICOM file from its input's pattern or table.

    Returns:
        ``{"subject", "study", "key", "description"}`` (original values, not yet
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
