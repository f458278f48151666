"""Find the scan files below the input folders (read only: nothing is ever written there).

What is recognised:

* DICOM by content (the ``DICM`` magic at byte 128), so files without an extension are
  found; files named like DICOM (``.dcm``, ``.ima``, no extension) without the magic are still
  offered as DICOM so that a broken one is reported rather than silently skipped (old
  ACR-NEMA files have no preamble and are read this way too).
* Every file that a ``DICOMDIR`` references, whatever its name.
* NIfTI (``.nii``, ``.nii.gz``) and 2D images (PNG, JPEG, TIFF, BMP).

Each non-DICOM file also gets a *role* from its input's ``masks`` and ``instances`` patterns:
``image`` (the default), ``mask`` (a label map) or ``instances`` (one binary mask per object,
merged per subject and study at ingest).
"""

from __future__ import annotations

import errno
import logging
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pydicom

from medcnn.io.dicom import looks_like_dicom
from medcnn.io.files import file_kind, open_regular

log = logging.getLogger(__name__)

DICOM_SUFFIXES = frozenset({".dcm", ".dicom", ".ima", ""})
NIFTI_SUFFIXES = (".nii", ".nii.gz")
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"})
SKIPPED_NAMES = frozenset({"DICOMDIR", ".DS_Store", "Thumbs.db"})


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


def classify(path: Path, size: int, min_bytes: int = 132) -> str:
    """The kind of a file, from its name and (for DICOM) its content."""
    if looks_like_dicom(path):
        return "dicom"
    name = path.name.lower()
    if name.endswith(NIFTI_SUFFIXES):
        return "nifti"
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return "image"
    if suffix in (".dcm", ".dicom", ".ima"):
        return "dicom"
    if suffix == "" and size >= min_bytes:
        # Old ACR-NEMA style files have no preamble; try them, quarantine if not.
        return "dicom"
    return "other"


@dataclass(frozen=True)
class Skipped:
    """A path below the inputs that is not read, and why (a row of ``files.tsv``)."""

    path: Path
    reason: str
    spec: InputSpec | None = None


def inside(path: Path, roots: list[Path]) -> bool:
    """Whether ``path`` (resolved) lies in one of the resolved ``roots``."""
    return any(path == root or root in path.parents for root in roots)


def dicomdir_files(
    dicomdir: Path, roots: list[Path] | None = None, skipped: list[Skipped] | None = None
) -> list[Path]:
    """Files referenced by a DICOMDIR (that exist), in the order of its records.

    An entry that climbs out of the DICOMDIR's folder (``..``, an absolute path) or resolves
    outside ``roots`` (default: the DICOMDIR's folder) is never read: it is appended to
    ``skipped`` with its reason, as is an entry whose file is missing. A DICOMDIR that cannot
    be read is logged and ignored: its files are still found by the folder walk.
    """
    roots = [Path(os.path.realpath(r)) for r in (roots or [dicomdir.parent])]
    skipped = [] if skipped is None else skipped
    try:
        with open_regular(dicomdir) as fh:
            ds = pydicom.dcmread(fh, force=True)
        records = ds.DirectoryRecordSequence
    except Exception as exc:  # a broken DICOMDIR must not stop ingest
        log.warning("ignoring unreadable DICOMDIR (%s)", type(exc).__name__)
        return []
    files = []
    for record in records:
        ref = record.get("ReferencedFileID")
        if not ref:
            continue
        parts = [str(ref)] if isinstance(ref, str) else [str(p) for p in ref]
        if any(p in ("..", "") or Path(p).is_absolute() or "/" in p for p in parts):
            skipped.append(Skipped(dicomdir, "DICOMDIR entry points outside its folder"))
            continue
        path = dicomdir.parent.joinpath(*parts)
        if not path.is_file():
            # DICOMDIR file IDs are upper case; file systems may have stored them otherwise.
            path = _case_insensitive(dicomdir.parent, parts) or path
        if not inside(Path(os.path.realpath(path)), roots):
            skipped.append(Skipped(dicomdir, "DICOMDIR entry resolves outside the inputs"))
        elif path.is_file():
            files.append(path)
        else:
            skipped.append(Skipped(dicomdir, "DICOMDIR entry names a missing file"))
    return files


def _case_insensitive(root: Path, parts: list[str]) -> Path | None:
    current = root
    for part in parts:
        try:
            match = next(p for p in current.iterdir() if p.name.lower() == part.lower())
        except (StopIteration, OSError):
            return None
        current = match
    return current


@dataclass
class _Walk:
    """State of one discovery: where the inputs really are, and what has been seen."""

    roots: list[Path]
    min_bytes: int
    follow_links: bool
    skipped: list[Skipped]
    seen_files: dict[str, Path] = field(default_factory=dict)
    seen_dirs: set[str] = field(default_factory=set)


def discover(
    folders: list[Path] | list[InputSpec],
    min_bytes: int = 132,
    skipped: list[Skipped] | None = None,
    follow_links: bool = False,
) -> Iterator[Candidate]:
    """Walk the input folders recursively in a stable (sorted) order.

    Only regular files are offered (never FIFOs, devices or sockets, which could block or
    never end). Everything else found is appended to ``skipped`` with its reason: hidden
    files and folders, symlink loops and dangling links, links that resolve outside the
    input folders (unless ``follow_links``), other paths to a file already found, system
    files, files too small or not named or shaped like a scan.

    Args:
        folders: input folders (paths, or specs from :func:`parse_inputs`).
        min_bytes: files without extension smaller than this are not taken for DICOM.
        skipped: receives one :class:`Skipped` per path not offered.
        follow_links: read links that resolve outside the input folders (``ingest.follow_links``).

    Raises:
        FileNotFoundError: an input folder does not exist.
    """
    specs = [f if isinstance(f, InputSpec) else InputSpec(Path(f)) for f in folders]
    for spec in specs:
        if not spec.path.is_dir():
            raise FileNotFoundError(f"input folder not found: {spec.path}")
    walk = _Walk(
        roots=[Path(os.path.realpath(s.path)) for s in specs],
        min_bytes=min_bytes,
        follow_links=follow_links,
        skipped=[] if skipped is None else skipped,
    )
    for spec in specs:
        walk.seen_dirs.add(os.path.realpath(spec.path))
        yield from _walk_folder(spec, spec.path, walk)


def _link_problem(path: Path, walk: _Walk) -> str:
    """Why a symlink is not followed ("" when it may be)."""
    try:
        target = Path(os.path.realpath(path, strict=True))
    except RuntimeError:
        return "symlink loop"
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "symlink loop"
        return "dangling symlink (its target does not exist)"
    if not walk.follow_links and not inside(target, walk.roots):
        return "symlink resolves outside the inputs (ingest.follow_links: false)"
    return ""


def _walk_folder(spec: InputSpec, folder: Path, walk: _Walk) -> Iterator[Candidate]:
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as exc:
        walk.skipped.append(Skipped(folder, f"folder cannot be read ({exc.strerror})", spec))
        return
    if any(e.name == "DICOMDIR" for e in entries):
        for path in dicomdir_files(folder / "DICOMDIR", walk.roots, walk.skipped):
            real = os.path.realpath(path)
            if real not in walk.seen_files:
                walk.seen_files[real] = path
                yield Candidate(path, "dicom", spec)
    for entry in entries:
        path = Path(entry.path)
        problem = _link_problem(path, walk) if entry.is_symlink() else ""
        if problem:
            walk.skipped.append(Skipped(path, problem, spec))
        elif entry.name.startswith("."):
            what = "folder" if entry.is_dir() else "file"
            walk.skipped.append(Skipped(path, f"hidden {what}", spec))
        elif entry.is_dir():
            real = os.path.realpath(path)
            if real in walk.seen_dirs:
                walk.skipped.append(Skipped(path, "link to a folder already read", spec))
                continue
            walk.seen_dirs.add(real)
            yield from _walk_folder(spec, path, walk)
        else:
            candidate = _offer(spec, path, walk)
            if candidate is not None:
                yield candidate


def _offer(spec: InputSpec, path: Path, walk: _Walk) -> Candidate | None:
    """The candidate for one file, or None (with a skip row, unless already offered)."""
    try:
        st = path.stat()
    except OSError as exc:
        walk.skipped.append(Skipped(path, f"cannot stat ({exc.strerror})", spec))
        return None
    if not stat.S_ISREG(st.st_mode):
        walk.skipped.append(Skipped(path, f"not a regular file ({file_kind(st.st_mode)})", spec))
        return None
    real = os.path.realpath(path)
    if real in walk.seen_files:
        if walk.seen_files[real] != path:
            walk.skipped.append(Skipped(path, "another path to a file already read", spec))
        return None
    walk.seen_files[real] = path
    if path.name in SKIPPED_NAMES:
        walk.skipped.append(Skipped(path, "not a scan (index or system file)", spec))
        return None
    kind = classify(path, st.st_size, walk.min_bytes)
    if kind == "other":
        small = st.st_size < walk.min_bytes
        reason = f"too small ({st.st_size} bytes)" if small else "not a scan file"
        walk.skipped.append(Skipped(path, reason, spec))
        return None
    return Candidate(path, kind, spec)


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


def inventory_digest(folders: list[str | Path]) -> str:
    """SHA-256 over every file's path, size and modification time below the folders.

    A folder's own mtime changes only when an entry directly inside it changes, so scans
    added two levels down would not make Snakemake re-run ingest; this digest does. It reads
    no file contents, so it stays cheap (about a microsecond per file).
    """
    import hashlib

    digest = hashlib.sha256()
    for folder in folders:
        for root, dirs, files in os.walk(folder):
            dirs.sort()
            for name in sorted(files):
                path = os.path.join(root, name)
                try:
                    st = os.stat(path)
                except OSError:
                    continue
                digest.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()
