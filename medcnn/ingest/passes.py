"""The two DICOM passes as tasks for :class:`medcnn.ingest.workers.Workers`.

Each task works on a scratch copy of the run's :class:`Context` (the settings shared, the
ledger empty) and returns what it found; the parent merges the results in input order, so
a run in several processes writes what a run in one writes. The header pass checks
duplicate SOP instances across tasks here, as one pass over the files in discovery order
would.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from medcnn.ingest.context import Context, Entry, Fate
from medcnn.ingest.convert_dicom import convert_projections, convert_volumes
from medcnn.ingest.dicom_headers import STAGE, read_entry, subject_ids
from medcnn.ingest.discovery import Candidate
from medcnn.ingest.workers import Workers, merge_grids, shared
from medcnn.io import dicom_values
from medcnn.io.deid import pseudonym

#: Files per header task: large enough that a task's overhead (pickling, a pipe round
#: trip) is small against its header reads, small enough to spread over the workers. One
#: chunk (up to 32 files, ~50 ms of header reads) runs in the parent: starting the workers
#: costs some 20-40 ms (measured on 2 cores), more than half of it would save.
HEADER_CHUNK = 32


@dataclasses.dataclass
class HeaderResult:
    """What the header pass made of one file: its entry, or its fate; and its SOP UID."""

    entry: Entry | None
    sop: str | None
    fate: Fate | None


#: What a header task returns: one result per file, and the identifiers seen.
HeaderChunk = tuple[list[HeaderResult], set[str]]


@dataclasses.dataclass
class Converted:
    """What converting one series added to the run."""

    rows: list[dict[str, Any]]
    mapping: list[tuple[str, str, str]]
    grids: dict[tuple[str, str], list]
    fates: dict[Path, Fate]


def scratch(ctx: Context, fates: dict[Path, Fate] | None = None, phi: set | None = None) -> Context:
    """A context with ``ctx``'s settings and an empty ledger (or the given fates); the cache
    of shown paths is ``ctx``'s."""
    return dataclasses.replace(
        ctx,
        rows=[],
        grids=defaultdict(list),
        mapping=[],
        fates=dict(fates or {}),
        skipped=[],
        phi=set(phi or ()),
        # Shared, not emptied: a path's shown form depends on the settings and key alone,
        # and the parent has made every one already (a worker has its forked copy).
        shown_paths=ctx.shown_paths,
    )


def header_task(cands: list[Candidate]) -> HeaderChunk:
    """Read the headers of some files: one result each, and the identifiers seen."""
    ctx = scratch(shared("ctx"))
    tables = shared("tables")
    results = []
    for cand in cands:
        seen: dict[str, Path] = {}  # fills with this file's SOP UID once it is read
        entry = None
        with ctx.isolated([cand.path], STAGE):
            entry = read_entry(cand, ctx, seen, tables)
        fate = ctx.fates.get(cand.path)
        results.append(HeaderResult(entry, next(iter(seen), None), fate))
    return results, ctx.phi


def _header_crash(cands: list[Candidate], reason: str) -> HeaderChunk | None:
    """A chunk whose worker died alone: None (read again file by file), or for one file,
    its quarantine."""
    if len(cands) > 1:
        return None
    ctx = scratch(shared("ctx"))
    ctx.reject(cands[0].path, STAGE, reason)
    return [HeaderResult(None, None, ctx.fates[cands[0].path])], set()


def read_headers(cands: list[Candidate], ctx: Context, workers: Workers) -> list[Entry]:
    """The header pass over ``cands`` (in discovery order): the usable entries.

    Quarantines go into ``ctx`` as a pass in one process would make them: a duplicate
    SOPInstanceUID is the later file's, in discovery order.
    """
    dicom_values.clear()
    chunks = [cands[i : i + HEADER_CHUNK] for i in range(0, len(cands), HEADER_CHUNK)]
    done = dict(workers.run(header_task, chunks, _header_crash))
    for index, result in done.items():
        if result is None:  # its worker died: each file alone, so only the culprit is lost
            singles = [[cand] for cand in chunks[index]]
            again = dict(workers.run(header_task, singles, _header_crash))
            parts = [again[i] for i in range(len(singles))]
            done[index] = (
                [r for results, _ in parts for r in results],
                {value for _, phi in parts for value in phi},
            )
    entries: list[Entry] = []
    seen_sop: dict[str, Path] = {}
    for index, chunk in enumerate(chunks):
        results, phi = done[index]
        ctx.phi.update(phi)
        for cand, result in zip(chunk, results, strict=True):
            sop = result.sop
            if sop and sop in seen_sop:
                duplicate = f"duplicate SOPInstanceUID of {ctx.shown(seen_sop[sop])}"
                ctx.reject(cand.path, STAGE, duplicate)
                continue
            if sop is not None:
                seen_sop[sop] = cand.path
            if result.fate is not None:
                ctx.fates[cand.path] = result.fate
            elif result.entry is not None:
                entries.append(result.entry)
    return entries


def convert_task(payload: tuple[str, list[Entry], dict[Path, Fate]]) -> Converted:
    """Convert one series (``projections`` or ``volumes``) on a scratch context."""
    kind, members, fates = payload
    phi = {value for entry in members for value in entry.phi}
    ctx = scratch(shared("ctx"), fates, phi)
    if kind == "projections":
        convert_projections(members, ctx)
    else:
        convert_volumes(members, ctx)
    return Converted(
        ctx.rows, ctx.mapping, dict(ctx.grids), {e.path: ctx.fates[e.path] for e in members}
    )


def _convert_crash(payload: tuple[str, list[Entry], dict[Path, Fate]], reason: str) -> Converted:
    """A series whose worker died on its own: its files are quarantined with the reason."""
    kind, members, fates = payload
    ctx = scratch(shared("ctx"), fates)
    for entry in members:
        ctx.reject(entry.path, "decode", reason)
    return Converted([], [], {}, {e.path: ctx.fates[e.path] for e in members})


def convert_series(
    groups: list[tuple[str, list[Entry]]], ctx: Context, workers: Workers, cache: Any
) -> None:
    """Convert series in parallel (the largest first, to spread the work) into ``ctx``.

    A series that ``cache`` (a :class:`medcnn.ingest.cache.ConvertCache`) holds unchanged
    is restored from it instead, without decoding.
    """
    todo = []
    for kind, members in groups:
        first = members[0]
        key = cache.key("dicom", kind, first.patient_id, first.study_uid, first.series_uid)
        if cache.restore(key, [e.path for e in members]):
            subject_ids(first, ctx)  # the mapping rows, as a conversion adds them
        else:
            todo.append((key, kind, members))
    todo.sort(key=lambda item: -sum(len(e.frames) for e in item[2]))
    payloads = [
        (kind, members, {e.path: ctx.fates[e.path] for e in members}) for _, kind, members in todo
    ]
    # Two series or more go to the workers however small (starting them costs 20-40 ms):
    # a conversion that crashes the interpreter then takes its worker down, not the run.
    for index, result in workers.run(convert_task, payloads, _convert_crash):
        merge(ctx, result)
        members = todo[index][2]
        cache.store(todo[index][0], [e.path for e in members], result, "", identity(cache, members))


def convert_labels(label_groups: list[list[Entry]], ctx: Context, cache: Any) -> None:
    """Convert label series in this process, after the images they are checked against."""
    for members in label_groups:
        first = members[0]
        key = cache.key("dicom", "mask", first.patient_id, first.study_uid, first.series_uid)
        ids = (
            pseudonym(first.patient_id, ctx.secret, "sub-"),
            pseudonym(first.study_uid, ctx.secret, "ses-", 8),
        )
        extra = grids_digest(ctx.grids.get(ids, []))
        paths = [e.path for e in members]
        if cache.restore(key, paths, extra):
            subject_ids(first, ctx)
            continue
        result = captured(ctx, paths, lambda m=members: convert_volumes(m, ctx, role="mask"))
        cache.store(key, paths, result, extra, identity(cache, members))


def identity(cache: Any, members: list[Entry]) -> tuple[str, list[str]]:
    """The keyed identity of a DICOM series for the cache: group key and SOP keys."""
    first = members[0]
    group = cache.group_key(first.patient_id, first.study_uid, first.series_uid)
    return group, [cache.sop_key(e.sop_uid) for e in members if e.sop_uid]


def captured(ctx: Context, paths: list[Path], work: Any) -> Converted:
    """Run ``work()`` on ``ctx`` itself; what it added, as a task would return it."""
    rows, mapping = len(ctx.rows), len(ctx.mapping)
    grids = {k: len(v) for k, v in ctx.grids.items()}
    work()
    added = {k: v[grids.get(k, 0) :] for k, v in ctx.grids.items() if len(v) > grids.get(k, 0)}
    return Converted(
        ctx.rows[rows:],
        ctx.mapping[mapping:],
        added,
        {p: ctx.fates[p] for p in paths if p in ctx.fates},  # a skipped file has none
    )


def grids_digest(grids: list[tuple[tuple[int, ...], np.ndarray]]) -> str:
    """Digest of the image grids of a subject and study (what a label map is checked on)."""
    items = sorted(
        (list(shape), [round(float(v), 6) for v in np.asarray(affine).ravel()])
        for shape, affine in grids
    )
    return hashlib.sha256(json.dumps(items).encode()).hexdigest()


def merge(ctx: Context, result: Converted) -> None:
    """Add one series' results to the run."""
    ctx.rows.extend(result.rows)
    ctx.mapping.extend(result.mapping)
    merge_grids(ctx.grids, result.grids)
    ctx.fates.update(result.fates)
