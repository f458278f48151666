"""The evaluate stage: held-out metrics of a task's fold ensemble on its test patients,
``results/models/{task}/evaluation.json`` (+ figures)."""

from __future__ import annotations

from typing import Any

from medcnn.config import is_segmentation


def run(config: dict[str, Any], name: str) -> dict[str, Any]:
    """Evaluate task ``name``; returns what ``evaluation.json`` holds."""
    if is_segmentation(config["tasks"][name]):
        from medcnn.stages.evaluate.segmentation import run_evaluate_segmentation

        return run_evaluate_segmentation(config, name)
    from medcnn.stages.evaluate.classification import run_evaluate

    return run_evaluate(config, name)
