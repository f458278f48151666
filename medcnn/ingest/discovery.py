"""Find the scan files below the input folders (read only: nothing is ever written there)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from medcnn.io.dicom import looks_like_dicom

DICOM_SUFFIXES = frozenset({".dcm", ".dicom", ".ima", ""})
SKIPPED_NAMES = frozenset({"DICOMDIR", ".DS_Store", "Thumbs.db"})


@dataclass(frozen=True)
class Candidate:
    """A file that may be a scan.

    Attributes:
        path: the file.
        kind: ``dicom`` when it has the DICOM magic or a DICOM-like name (it is then read,
            and quarantined if it is not DICOM after all), else ``other``.
    """

    path: Path
    kind: str


def discover(folders: list[Path], min_bytes: int = 132) -> Iterator[Candidate]:
    """Walk folders recursively in a stable (sorted) order.

    DICOM is recognised by content (the ``DICM`` magic), so files without an extension are
    found; a file named like DICOM but without the magic is still offered as ``dicom`` so that
    a broken one is reported rather than silently skipped.

    Raises:
        FileNotFoundError: an input folder does not exist.
    """
    for folder in folders:
        if not folder.is_dir():
            raise FileNotFoundError(f"input folder not found: {folder}")
        for root, dirs, files in os.walk(folder):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(files):
                if name.startswith(".") or name in SKIPPED_NAMES:
                    continue
                path = Path(root) / name
                try:
                    size = path.stat().st_size
                except OSError:
                    continue
                suffix = path.suffix.lower()
                if looks_like_dicom(path) or (suffix in (".dcm", ".dicom", ".ima")):
                    yield Candidate(path, "dicom")
                elif suffix == "" and size >= min_bytes:
                    # Old ACR-NEMA style files have no preamble; try them, quarantine if not.
                    yield Candidate(path, "dicom")
                else:
                    yield Candidate(path, "other")
