"""The predict stage: ``results/predict/{task}/{subject}.json`` (+ masks) per subject, with
the task's fold bundles."""

from __future__ import annotations

from typing import Any

from medcnn.stages.predict.classification import run_predict
from medcnn.stages.predict.segmentation import run_predict_segmentation
from medcnn.stages.subjects import run_per_subject


def run(
    config: dict[str, Any], name: str, subject: str | None, batch: str | None, threads: int = 1
) -> None:
    """Predict the subject, or each subject of the batch (then write the batch marker)."""
    kinds = (run_predict, run_predict_segmentation)
    run_per_subject(
        config, "predict", name, subject, batch, threads, kinds, "predict/{name}/{subject}.json"
    )
