"""What a re-run of ingest need not do again: series whose files and settings are unchanged.

``results/ingest/convert_cache.json`` records, for each series converted (or quarantined) in
the last run, every input file's ``(size, mtime_ns, inode)`` and what the conversion added
to the run: manifest rows, image grids (to check label maps against), and each file's fate.
A re-run still walks the inputs and reads the headers (to group files into series, and to
know the identifiers to scrub), but a series whose files all carry the same signatures, whose
settings digest is the same and whose outputs are all still there is restored from the
record: no pixel is decoded and nothing is written. A changed, added or removed file
re-converts its own series only. The signature is taken before the file is read, so a file
changed during a run is converted again in the next.

The record holds no identifier: series and files are keyed by keyed hashes (HMAC with
``deid.secret``) of their UIDs and paths, the rows are the manifest's (pseudonyms only), the
reasons are scrubbed as ``quarantine.tsv``'s. The settings digest covers everything that
changes a conversion: the medcnn version, the ``deid``, ``ingest`` (but ``workers``),
``labels`` and ``inputs`` settings, the labels and subject tables, and the secret itself.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medcnn import __version__
from medcnn.ingest.context import Context, Fate
from medcnn.ingest.passes import Converted

log = logging.getLogger("medcnn.ingest.pipeline")

CACHE = "convert_cache.json"
FORMAT = 2

Signature = tuple[int, int, int]


def signature(path: Path) -> Signature | None:
    """``(size, mtime_ns, inode)`` of a file, None when it cannot be stat'ed."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns, st.st_ino)


def settings_digest(ctx: Context, tables: dict[Path, Any]) -> str:
    """Keyed digest of everything that changes what a conversion writes."""
    config = ctx.config
    ingest = {k: v for k, v in config["ingest"].items() if k != "workers"}
    deid = {k: v for k, v in config["deid"].items() if k not in ("secret", "mapping")}
    payload = {
        "version": __version__,
        "format": FORMAT,
        "deid": deid,
        "ingest": ingest,
        "labels": config["labels"],
        "label_values": ctx.labels,
        "inputs": config["inputs"],
        "tables": {str(k): v for k, v in sorted(tables.items(), key=lambda kv: str(kv[0]))},
    }
    text = json.dumps(payload, sort_keys=True, default=str)
    return hmac.new(ctx.secret, text.encode(), hashlib.sha256).hexdigest()


@dataclass
class Record:
    """One series as the last run left it."""

    files: dict[str, list[int]]
    extra: str
    rows: list[dict[str, Any]]
    grids: list[list[Any]]
    fates: dict[str, list[str]]
    #: Keyed hash of (PatientID, StudyInstanceUID, SeriesInstanceUID) of a DICOM series, and
    #: of each file's SOPInstanceUID ("" and none for other files).
    group: str = ""
    sops: list[str] = field(default_factory=list)


@dataclass
class ConvertCache:
    """The records of the last run, and those of this run as it goes.

    Attributes:
        hits: series restored from the last run (not decoded).
        misses: series converted in this run.
    """

    path: Path
    ctx: Context
    digest: str
    previous: dict[str, Record] = field(default_factory=dict)
    current: dict[str, Record] = field(default_factory=dict)
    signatures: dict[Path, Signature | None] = field(default_factory=dict)
    hits: int = 0
    misses: int = 0

    @classmethod
    def load(cls, ctx: Context, tables: dict[Path, Any]) -> ConvertCache:
        """The cache of ``ctx.out`` (empty when absent, unreadable or of other settings)."""
        path = ctx.out / CACHE
        cache = cls(path, ctx, settings_digest(ctx, tables))
        try:
            stored = json.loads(path.read_text())
        except (OSError, ValueError):
            return cache
        if not isinstance(stored, dict) or stored.get("format") != FORMAT:
            return cache
        if stored.get("settings") != cache.digest:
            log.info("ingest settings changed since the last run: every series is converted")
            return cache
        try:
            cache.previous = {k: Record(**v) for k, v in stored.get("series", {}).items()}
        except TypeError:  # a record of another shape: start afresh
            cache.previous = {}
        return cache

    def key(self, *parts: str) -> str:
        """Keyed hash of a series' identity (its UIDs never reach the file)."""
        text = "\0".join(parts).encode("utf-8", "surrogatepass")  # file names need not be UTF-8
        return hmac.new(self.ctx.secret, text, hashlib.sha256).hexdigest()

    def file_key(self, path: Path) -> str:
        return self.key("file", os.path.abspath(path))[:32]

    def stat(self, paths: list[Path]) -> None:
        """Take the signatures of files about to be read."""
        for path in paths:
            self.signatures[path] = signature(path)

    def _files(self, paths: list[Path]) -> dict[str, list[int]] | None:
        files = {}
        for path in paths:
            sig = self.signatures.get(path) or signature(path)
            if sig is None:
                return None
            files[self.file_key(path)] = list(sig)
        return files

    def restore(self, key: str, paths: list[Path], extra: str = "") -> bool:
        """Put the last run's results of a series into the run, if nothing changed."""
        record = self.previous.get(key)
        if record is None or record.extra != extra or record.files != self._files(paths):
            return False
        by_key = {self.file_key(p): p for p in paths}
        if set(record.fates) != set(by_key) or not self._outputs_exist(record):
            return False
        self._apply(key, record, by_key)
        return True

    def _outputs_exist(self, record: Record) -> bool:
        results = self.ctx.results
        outputs = [row[column] for row in record.rows for column in ("path", "sidecar")]
        return all((results / output).is_file() for output in outputs)

    def unchanged_series(self, paths: list[Path]) -> dict[str, tuple[Record, dict[str, Path]]]:
        """DICOM image series of the last run whose files are all among ``paths``, unchanged,
        with their outputs in place: they need not even have their headers read.

        Not with ``deid.mapping`` (which needs the identifiers from the headers); label series
        are left out (they depend on the grids of the images converted in this run).
        """
        if self.ctx.config["deid"]["mapping"]:
            return {}
        by_key = {self.file_key(p): p for p in paths}
        found = {}
        for key, record in self.previous.items():
            if not record.group or record.extra:
                continue
            mine = {k: by_key.get(k) for k in record.files}
            if None in mine.values() or set(record.fates) != set(mine):
                continue
            if self._files(list(mine.values())) != record.files:  # type: ignore[arg-type]
                continue
            if self._outputs_exist(record):
                found[key] = (record, mine)  # type: ignore[assignment]
        return found

    def restore_unread(self, key: str, record: Record, files: dict[str, Path]) -> None:
        """Restore a series found by :meth:`unchanged_series` (its headers were not read)."""
        self._apply(key, record, files)

    def _apply(self, key: str, record: Record, by_key: dict[str, Path]) -> None:
        ctx = self.ctx
        ctx.rows.extend(record.rows)
        for subject, study, shape, affine in record.grids:
            ctx.grids[(subject, study)].append((tuple(shape), np.asarray(affine, dtype=float)))
        for file_key, (fate, stage, detail) in record.fates.items():
            path = by_key[file_key]
            ctx.fates[path] = Fate(ctx.shown(path), fate, stage, detail)
        self.current[key] = record
        self.hits += 1

    def group_key(self, patient_id: str, study_uid: str, series_uid: str) -> str:
        """Keyed hash of a DICOM series' identity, the same whatever its kind."""
        return self.key("group", patient_id, study_uid, series_uid)[:32]

    def sop_key(self, sop_uid: str) -> str:
        return self.key("sop", sop_uid)[:32]

    def store(
        self,
        key: str,
        paths: list[Path],
        result: Converted,
        extra: str = "",
        identity: tuple[str, list[str]] = ("", []),
    ) -> None:
        """Record what converting a series added to the run (``identity``: the group key
        and the SOP keys of a DICOM series)."""
        self.misses += 1
        files = self._files(paths)
        if files is None:
            return
        fates = {}
        for path in paths:
            fate = result.fates.get(path)
            if fate is None or not fate.fate:
                return  # skipped (or unaccounted for): converted again next time
            detail = fate.detail if fate.fate == "converted" else self.ctx.scrub(fate.detail)
            fates[self.file_key(path)] = [fate.fate, fate.stage, detail]
        grids = [
            [subject, study, [int(s) for s in shape], np.asarray(affine, float).tolist()]
            for (subject, study), items in result.grids.items()
            for shape, affine in items
        ]
        rows = json.loads(json.dumps(result.rows, default=_plain))
        group, sops = identity
        self.current[key] = Record(files, extra, rows, grids, fates, group, sorted(sops))

    def save(self) -> None:
        """Write the records of this run (atomically; series not seen are dropped)."""
        payload = {
            "format": FORMAT,
            "settings": self.digest,
            "series": {k: vars(v) for k, v in sorted(self.current.items())},
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".part")
        tmp.write_text(json.dumps(payload, separators=(",", ":")))
        tmp.replace(self.path)


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
