"""What a stage's jobs ask the scheduler for: memory scaled to the data, runtime, GPUs.

Snakemake calls the functions returned by :func:`stage_resources` for each job (with the
job's wildcards and attempt number), after ingest has written the manifest.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from medcnn.config import is_segmentation

#: Stages whose memory grows with the images (the others take ``mem_mb`` as configured).
SCALED_STAGES = ("preprocess", "train", "predict", "saliency")
#: Bytes per voxel in flight: float32, and a few copies (original, resampled, augmented, batch).
BYTES_PER_VOXEL = 4 * 8


def _shapes(manifest: Path) -> list[str]:
    if not manifest.exists():
        return []
    with open(manifest) as fh:
        return [row["shape"] for row in csv.DictReader(fh, delimiter="\t")]


def _voxels(shape: str) -> int:
    return math.prod(int(v) for v in shape.split("x"))


def largest_voxels(manifest: Path) -> int:
    """Voxels of the largest image in the manifest (0 before ingest)."""
    return max((_voxels(s) for s in _shapes(manifest)), default=0)


def training_voxels(manifest: Path, task: dict[str, Any]) -> int:
    """Voxels of a task's whole preprocessed set (an upper bound: every image of the cohort;
    0 before ingest)."""
    shapes = _shapes(manifest)
    if is_segmentation(task):
        # segmentation keeps every case in memory at about its own size (resampled)
        return sum(_voxels(s) for s in shapes)
    return len(shapes) * task["preprocess"]["size"] ** task["dims"]


def stage_resources(config: dict[str, Any], stage: str) -> dict[str, Any]:
    """Snakemake resources of a stage from config, memory scaled to the data and retries."""
    settings = config["resources"][stage]
    manifest = Path(config["results"]) / "ingest" / "manifest.tsv"

    def mem_mb(wildcards: Any, attempt: int) -> int:
        if stage == "train":
            voxels = training_voxels(manifest, config["tasks"][wildcards.task])
        else:
            voxels = largest_voxels(manifest)
        scaled = voxels * BYTES_PER_VOXEL / 2**20 if stage in SCALED_STAGES else 0
        return int((settings["mem_mb"] + scaled) * attempt)

    def runtime(wildcards: Any, attempt: int) -> int:
        return settings["runtime"] * attempt

    resources: dict[str, int | Callable[..., int]] = {"mem_mb": mem_mb, "runtime": runtime}
    if settings.get("gpu"):
        resources["gpu"] = settings["gpu"]
    if settings.get("gpu", 0) > 1:
        # DDP training runs on one node (torchrun --standalone): SLURM must not spread the
        # GPUs over several (the SLURM plugin turns this into --nodes=1).
        resources["nodes"] = 1
    return resources
