"""What every conversion of one ingest run shares: settings, the key, and the running ledger.

The ledger gives every file found one fate: ``converted`` (with the subject and series it
went into), ``quarantined`` (with the stage and the reason) or ``skipped`` (with the reason).
Conversions run inside :meth:`Context.isolated`, so any exception in one file or series,
whatever its type, quarantines exactly the files concerned and the run goes on.
"""

from __future__ import annotations

import contextlib
import logging
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medcnn.io.dicom import DicomReadError
from medcnn.io.dicom_series import AssemblyOptions, FrameInfo
from medcnn.io.limits import Limits
from medcnn.io.scrub import scrub_message, scrub_text, shown_path

log = logging.getLogger("medcnn.ingest.pipeline")

#: Values of the ``fate`` column of ``files.tsv``.
FATES = ("converted", "quarantined", "skipped")


@dataclass
class Entry:
    """One DICOM file after the header pass (identifiers kept in memory only).

    Attributes:
        phi: the patient's identifying values (name, IDs, birth date) to scrub from any
            text that leaves ingest; never written.
        syntax: the file's TransferSyntaxUID ("" when it has no file meta).
        patient_source: what ``patient_id`` was taken from: ``PatientID``, ``folder layout``
            (an input's pattern or table), or the fallback for an empty PatientID,
            ``StudyInstanceUID`` then ``SeriesInstanceUID`` (see :func:`subject_ids`).
    """

    path: Path
    modality: str
    patient_id: str
    study_uid: str
    series_uid: str
    sop_uid: str
    instance: int
    key_value: str | None
    description: str = ""
    frames: list[FrameInfo] = field(default_factory=list)
    dates: dict[str, str] = field(default_factory=dict)
    identifiers: dict[str, str] = field(default_factory=dict)
    phi: tuple[str, ...] = ()
    syntax: str = ""
    patient_source: str = "PatientID"


@dataclass
class Fate:
    """One row of ``files.tsv``."""

    file: str
    fate: str
    stage: str
    detail: str


@dataclass
class Context:
    """Settings, key, and the outputs of one ingest run as they accumulate."""

    config: dict[str, Any]
    results: Path
    out: Path
    secret: bytes
    options: AssemblyOptions
    labels: dict[str, dict[str, str]]
    folders: list[Path]
    limits: Limits = field(default_factory=Limits)
    rows: list[dict[str, Any]] = field(default_factory=list)
    #: (subject, study) -> [(spatial shape, affine)] of the images written, to check labels.
    grids: dict[tuple[str, str], list[tuple[tuple[int, ...], np.ndarray]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    mapping: list[tuple[str, str, str]] = field(default_factory=list)
    #: Fate of every file offered for conversion, by path.
    fates: dict[Path, Fate] = field(default_factory=dict)
    skipped: list[Fate] = field(default_factory=list)
    #: Every identifying value seen in a header: scrubbed from every reason written.
    phi: set[str] = field(default_factory=set)
    #: ``shown`` of each path asked for (a keyed hash per component: asked for two or three
    #: times per file).
    shown_paths: dict[Path, str] = field(default_factory=dict, repr=False)

    def shown(self, path: Path) -> str:
        """``path`` as tables, logs and reports show it (pseudonymised unless configured)."""
        shown = self.shown_paths.get(path)
        if shown is None:
            show = self.config["ingest"]["show_paths"]
            shown = self.shown_paths[path] = shown_path(path, self.folders, self.secret, show)
        return shown

    def scrub(self, text: str) -> str:
        """``text`` without any identifier seen so far, nor date- or ID-shaped tokens."""
        return scrub_text(text, self.phi)

    def reject(self, path: Path, stage: str, reason: str) -> None:
        """Quarantine ``path``: its fate becomes ``quarantined`` at ``stage``."""
        shown = self.shown(path)
        show = self.config["ingest"]["show_paths"]
        reason = scrub_message(reason, path, shown, self.phi, show)
        self.fates[path] = Fate(shown, "quarantined", stage, reason)
        log.warning("quarantined %s (%s): %s", shown, stage, reason)

    def skip(self, path: Path, stage: str, reason: str) -> None:
        """Record a path that is not read (or not converted), with the reason."""
        shown = self.shown(path)
        self.skipped.append(Fate(shown, "skipped", stage, reason))
        self.fates.pop(path, None)
        log.info("skipped %s: %s", shown, reason)

    def converted(self, paths: Iterable[Path], subject: str, series: str) -> None:
        """Mark the source files of one written image (a quarantine is never overwritten)."""
        for path in paths:
            fate = self.fates.get(path)
            if fate is not None and fate.fate == "quarantined":
                continue
            self.fates[path] = Fate(self.shown(path), "converted", "convert", f"{subject}/{series}")

    def offered(self, path: Path) -> None:
        """A file handed to conversion: unaccounted for until its fate is known."""
        self.fates[path] = Fate(self.shown(path), "", "", "")

    @contextlib.contextmanager
    def isolated(self, paths: Iterable[Path], stage: str) -> Iterator[None]:
        """Run a block; any exception quarantines ``paths`` at ``stage`` and is swallowed.

        A :class:`DicomReadError` is a reader's refusal, its message the reason; anything
        else is a failure nobody foresaw, recorded with its type (and logged in full at
        debug level) so that one file never stops a cohort.
        """
        paths = list(paths)
        try:
            yield
        except Exception as exc:  # noqa: BLE001 - per-file isolation is the point
            if isinstance(exc, DicomReadError):
                reason = str(exc)
            else:
                reason = f"{type(exc).__name__}: {exc or 'no detail'}"
                log.debug("unexpected error at %s", stage, exc_info=True)
            for path in paths:
                self.reject(path, stage, reason or type(exc).__name__)

    def quarantine_rows(self) -> list[tuple[str, str, str]]:
        """(file, stage, reason) of every quarantined file, scrubbed with all identifiers."""
        return [
            (f.file, f.stage, self.scrub(f.detail))
            for f in self.fates.values()
            if f.fate == "quarantined"
        ]

    def file_rows(self) -> list[Fate]:
        """Every file found, once, with its fate (an unaccounted one is a bug: logged)."""
        rows = []
        for fate in self.fates.values():
            if not fate.fate:
                log.error("ingest left %s unaccounted for (a bug)", fate.file)
                fate = Fate(fate.file, "skipped", "convert", "not converted (internal error)")
            if fate.fate != "converted":  # a converted file's detail is our own pseudonyms
                fate = Fate(fate.file, fate.fate, fate.stage, self.scrub(fate.detail))
            rows.append(fate)
        return rows + [Fate(f.file, f.fate, f.stage, self.scrub(f.detail)) for f in self.skipped]
