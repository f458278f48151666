"""The subjects a per-subject job works on, and the batch marker it writes when done."""

from __future__ import annotations

import csv
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from medcnn.config import is_segmentation
from medcnn.ingest.batches import batch_subjects

log = logging.getLogger(__name__)


def job_subjects(config: dict[str, Any], batch: str | None, subject: Any) -> list[str]:
    """The subjects of ``batch`` (an ingest batch) or the ``subject`` (one name or a list)."""
    if batch:
        return batch_subjects(Path(config["results"]) / "ingest", batch)
    return [subject] if isinstance(subject, str) else list(subject or [])


def batch_marker(config: dict[str, Any], batch: str | None, *parts: str) -> Path | None:
    """``results/<parts>/batches/<batch>.tsv``; None for a job that is not a batch."""
    if not batch:
        return None
    return Path(config["results"]).joinpath(*parts, "batches", f"{batch}.tsv")


def for_each_subject(
    subjects: list[str], work: Callable[[str], list[str]], marker: Path | None, what: str
) -> None:
    """Run ``work`` for each subject, then write ``marker`` (a TSV of subject and outputs).

    A subject that fails is logged with the error and the others go on; the step then fails
    (naming them) without writing the marker, so a re-run does the batch again.
    """
    rows, failed = [], []
    for subject in subjects:
        try:
            outputs = work(subject)
        except Exception:  # noqa: BLE001 - one bad subject must not stop its batch
            log.exception("%s failed for %s", what, subject)
            failed.append(subject)
            continue
        rows.extend(f"{subject}\t{o}" for o in outputs)
    if failed:
        raise RuntimeError(f"{what} failed for {len(failed)} subject(s): {', '.join(failed)}")
    if marker is not None:
        marker.parent.mkdir(parents=True, exist_ok=True)
        tmp = marker.with_suffix(".part")
        tmp.write_text("\n".join(["subject\toutput", *rows]) + "\n")
        tmp.replace(marker)


def batch_names(table: str | Path) -> list[str]:
    """The batches of ingest's ``batches.tsv`` (subject, batch), sorted."""
    with open(table) as fh:
        return sorted({row["batch"] for row in csv.DictReader(fh, delimiter="\t")})


def batch_manifests(results: str | Path, batch: str) -> list[str]:
    """A batch's subject list and each member's own manifest (a batch re-runs when one of
    its subjects changes, and only then); just the list before ingest has written it."""
    members = Path(results) / "ingest" / "batches" / f"{batch}.tsv"
    names = members.read_text().splitlines()[1:] if members.exists() else []
    return [str(members)] + [f"{results}/ingest/{s}/manifest.tsv" for s in names if s]


def run_per_subject(
    config: dict[str, Any],
    stage: str,
    name: str,
    subject: str | None,
    batch: str | None,
    threads: int,
    work: tuple[Callable[..., Any], Callable[..., Any]],
    output: str,
) -> None:
    """A per-subject stage job on the GPUs it asked for, then its batch marker.

    Args:
        work: the stage's ``(classification, segmentation)`` functions of one subject,
            ``f(config, name, subject, threads=threads)``; the task's kind picks one, which
            runs for the subject or for each subject of the batch.
        output: each subject's main output relative to ``results/``, a pattern of ``name``
            and ``subject``; the marker ``results/<stage>/<task>/batches/<batch>.tsv`` lists it.
    """
    from medcnn.devices import stage_device

    one_subject = work[1] if is_segmentation(config["tasks"][name]) else work[0]

    def one(subject: str) -> list[str]:
        one_subject(config, name, subject, threads=threads)
        return [output.format(name=name, subject=subject)]

    with stage_device(config, stage):
        subjects = job_subjects(config, batch, subject)
        marker = batch_marker(config, batch, stage, name)
        for_each_subject(subjects, one, marker, stage)
