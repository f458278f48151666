"""The saliency stage: ``results/saliency/{task}/{subject}/`` maps and faithfulness scores."""

from __future__ import annotations

from typing import Any

from medcnn.stages.saliency.classification import run_saliency
from medcnn.stages.saliency.segmentation import run_saliency_segmentation
from medcnn.stages.subjects import run_per_subject


def run(
    config: dict[str, Any], name: str, subject: str | None, batch: str | None, threads: int = 1
) -> None:
    """Saliency of the subject, or of each subject of the batch (then the batch marker)."""
    kinds = (run_saliency, run_saliency_segmentation)
    run_per_subject(
        config,
        "saliency",
        name,
        subject,
        batch,
        threads,
        kinds,
        "saliency/{name}/{subject}/saliency.json",
    )
