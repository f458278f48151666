"""The preprocess stage: a task's images -> ``results/preprocess/{task}/`` arrays, index and
``plans.json`` (a trained task), or one subject with a bundle's plans (a bundle task)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medcnn.config import is_segmentation
from medcnn.stages.layout import subject_index_path
from medcnn.stages.subjects import batch_marker, for_each_subject, job_subjects


def run_task(config: dict[str, Any], name: str) -> int:
    """Preprocess every image of task ``name``; returns the number of images written."""
    if is_segmentation(config["tasks"][name]):
        from medcnn.stages.preprocess.segmentation import run_preprocess_segmentation

        return run_preprocess_segmentation(config, name)
    from medcnn.stages.preprocess.classification import run_preprocess

    return run_preprocess(config, name)


def run_subject(config: dict[str, Any], name: str, subject: str) -> int:
    """Preprocess one subject of a bundle task with the bundle's plans."""
    if is_segmentation(config["tasks"][name]):
        from medcnn.stages.preprocess.segmentation import run_preprocess_segmentation_subject

        return run_preprocess_segmentation_subject(config, name, subject)
    from medcnn.stages.preprocess.classification import run_preprocess_subject

    return run_preprocess_subject(config, name, subject)


def run(config: dict[str, Any], name: str, subject: str | None, batch: str | None) -> None:
    """The whole task (no subject or batch given), else each subject of the job."""
    results = Path(config["results"])
    subjects = job_subjects(config, batch, subject)
    if not subjects and not batch:
        run_task(config, name)
        return

    def one(subject: str) -> list[str]:
        run_subject(config, name, subject)
        return [str(subject_index_path(results, name, subject).relative_to(results))]

    for_each_subject(subjects, one, batch_marker(config, batch, "preprocess", name), "preprocess")
