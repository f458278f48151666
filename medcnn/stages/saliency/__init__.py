"""The saliency stage: ``results/saliency/{task}/{subject}/`` maps and faithfulness scores."""

from __future__ import annotations

from typing import Any

from medcnn.config import is_segmentation
from medcnn.stages.subjects import run_per_subject


def run(
    config: dict[str, Any], name: str, subject: str | None, batch: str | None, threads: int = 1
) -> None:
    """Saliency of the subject, or of each subject of the batch (then the batch marker)."""
    if is_segmentation(config["tasks"][name]):
        from medcnn.stages.saliency.segmentation import run_saliency_segmentation as saliency
    else:
        from medcnn.stages.saliency.classification import run_saliency as saliency

    def one(subject: str) -> str:
        saliency(config, name, subject, threads=threads)
        return f"saliency/{name}/{subject}/saliency.json"

    run_per_subject(config, "saliency", name, subject, batch, one)
