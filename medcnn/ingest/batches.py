"""Arrival batches: which subjects the per-subject stages process together, in one job.

Starting Python with torch and MONAI costs seconds, so preprocessing, prediction, saliency and
reports run one job per *batch* of subjects rather than per subject, loading the models once.
A subject keeps the batch it was first given; subjects new to a run are put into new batches,
so a re-run after new scans arrive processes only the new batches (a subject whose scans change
re-runs its own batch).

Files, both rewritten only when their content changes (Snakemake compares times); the
assignment carried from run to run is read from the per-batch files:

- ``results/ingest/batches.tsv``: ``subject``, ``batch`` for every subject of the manifest;
- ``results/ingest/batches/{batch}.tsv``: the subjects of one batch (one per line, header
  ``subject``).
"""

from __future__ import annotations

import math
from pathlib import Path

BATCHES = "batches.tsv"
BATCH_FOLDER = "batches"


def batch_name(number: int) -> str:
    """``b0001``, ``b0002``, …"""
    return f"b{number:04d}"


def read_batches(ingest: Path) -> dict[str, str]:
    """``{subject: batch}`` as assigned so far (empty when nothing was assigned yet).

    Read from the per-batch files: ``batches.tsv`` is an output of the ingest job, which
    Snakemake deletes before it re-runs ingest, so it cannot carry the assignment from one run
    to the next; the per-batch files are not declared outputs and stay. ``batches.tsv`` is
    the fallback for a results folder without them.
    """
    folder = ingest / BATCH_FOLDER
    files = sorted(folder.glob("b*.tsv")) if folder.is_dir() else []
    if files:
        return {s: path.stem for path in files for s in path.read_text().split()[1:]}
    path = ingest / BATCHES
    if not path.exists():
        return {}
    import pandas as pd  # here only: ingest's start does not pay for pandas

    table = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    return dict(zip(table["subject"], table["batch"], strict=True))


def assign_batches(
    subjects: list[str], previous: dict[str, str], max_subjects: int, min_batches: int
) -> dict[str, str]:
    """Batches of ``subjects``: previous ones kept, new subjects spread over new batches.

    The new subjects (sorted) are cut into ``max(min_batches, ceil(n / max_subjects))``
    batches of nearly equal size (never more batches than subjects), so a handful of cores
    has parallel work even for a small arrival, and no batch exceeds ``max_subjects``.
    Subjects no longer in the manifest are dropped.
    """
    kept = {s: previous[s] for s in subjects if s in previous}
    new = sorted(s for s in subjects if s not in previous)
    if not new:
        return kept
    used = [int(b[1:]) for b in previous.values() if b[1:].isdigit()]
    start = max(used, default=0) + 1
    n_batches = min(len(new), max(min_batches, math.ceil(len(new) / max_subjects)))
    for index, subject in enumerate(new):
        kept[subject] = batch_name(start + index * n_batches // len(new))
    return kept


def _write_if_changed(path: Path, text: str) -> None:
    if path.exists() and path.read_text() == text:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part")
    tmp.write_text(text)
    tmp.replace(path)


def write_batches(ingest: Path, subjects: list[str], max_subjects: int, min_batches: int) -> dict:
    """Assign batches to the manifest's subjects and write the batch files; returns the map."""
    batches = assign_batches(subjects, read_batches(ingest), max_subjects, min_batches)
    lines = ["subject\tbatch"] + [f"{s}\t{batches[s]}" for s in sorted(batches)]
    _write_if_changed(ingest / BATCHES, "\n".join(lines) + "\n")
    members: dict[str, list[str]] = {}
    for subject, batch in batches.items():
        members.setdefault(batch, []).append(subject)
    folder = ingest / BATCH_FOLDER
    for batch, names in members.items():
        _write_if_changed(folder / f"{batch}.tsv", "\n".join(["subject", *sorted(names)]) + "\n")
    if folder.exists():
        for stale in folder.glob("*.tsv"):
            if stale.stem not in members:
                stale.unlink()
    return batches


def batch_subjects(ingest: Path, batch: str) -> list[str]:
    """The subjects of one batch.

    Raises:
        FileNotFoundError: no such batch (ingest has not assigned it).
    """
    path = ingest / BATCH_FOLDER / f"{batch}.tsv"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such batch (run ingest first)")
    return [line for line in path.read_text().splitlines()[1:] if line]
