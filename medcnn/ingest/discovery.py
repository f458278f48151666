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
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pydicom

from medcnn.ingest.inputs import (
    IMAGE_SUFFIXES,
    NIFTI_SUFFIXES,
    Candidate,
    InputSpec,
    identify,
    load_subject_table,
    parse_inputs,
)
from medcnn.io.dicom import looks_like_dicom
from medcnn.io.files import file_kind, open_regular

log = logging.getLogger(__name__)

#: Also importable from here (their home is :mod:`medcnn.ingest.inputs`).
__all__ = [
    "Candidate",
    "InputSpec",
    "Skipped",
    "classify",
    "dicomdir_files",
    "discover",
    "identify",
    "inventory_digest",
    "load_subject_table",
    "parse_inputs",
]

DICOM_SUFFIXES = frozenset({".dcm", ".dicom", ".ima", ""})
SKIPPED_NAMES = frozenset({"DICOMDIR", ".DS_Store", "Thumbs.db"})


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
                reason = "folder already read (through another path)"
                walk.skipped.append(Skipped(path, reason, spec))
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
                    st = os.lstat(path)  # a link's own entry: never follows /dev/zero or loops
                except OSError:
                    continue
                # fsencode: a file name that is not valid UTF-8 must not stop the workflow.
                digest.update(os.fsencode(path) + f"\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()
