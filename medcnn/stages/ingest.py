"""The ingest stage: input folders -> ``results/ingest/`` (NIfTI, sidecars, manifest,
quarantine, batches). The work is :func:`medcnn.ingest.pipeline.run_ingest`'s."""

from __future__ import annotations

from typing import Any


def run(config: dict[str, Any], threads: int | None = None) -> tuple[int, int]:
    """Ingest every input folder of ``config`` with the job's ``threads`` (the worker
    processes unless ``ingest.workers`` says otherwise); returns what run_ingest returns."""
    from medcnn.ingest.pipeline import run_ingest

    return run_ingest(config, threads=threads)
