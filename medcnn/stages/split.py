"""The split stage: ``results/splits/{task}.json``, the patient-level folds of a task.

:func:`medcnn.data.split.make_split` decides; this module reads the task's preprocessed index
and writes (and later reads back) the decision.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from medcnn.data.index import read_index
from medcnn.data.labels import LabelScheme
from medcnn.data.split import make_split

log = logging.getLogger(__name__)


def run_split(config: dict[str, Any], name: str) -> dict[str, Any]:
    """Write ``results/splits/{name}.json`` for task ``name``."""
    task = config["tasks"][name]
    results = Path(config["results"])
    index = read_index(results / "preprocess" / name / "index.tsv")
    # segmentation: "1" for a case with a label map, one stratum
    scheme = LabelScheme.from_target(task["target"]) if task["kind"] == "classification" else None
    split = {"task": name, **make_split(index, **task["split"], scheme=scheme)}
    out = results / "splits" / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(split, indent=2) + "\n")
    for k, fold in enumerate(split["folds"]):
        log.info(
            "split %s fold %d: %d train, %d val, %d test, %d unlabeled patients",
            name,
            k,
            len(fold["train"]),
            len(fold["val"]),
            len(split["test"]),
            len(split["unlabeled"]),
        )
    return split


def fold_split(results: Path, name: str, fold: int) -> dict[str, Any]:
    """A task's split from ``results/splits/{name}.json``, checked to hold fold ``fold``.

    Raises:
        ValueError: the fold is not in the split.
    """
    split = json.loads((results / "splits" / f"{name}.json").read_text())
    if not 0 <= fold < len(split["folds"]):
        raise ValueError(
            f"task {name}: fold {fold} is not in the split ({len(split['folds'])} folds); "
            "re-run split after changing split.folds"
        )
    return split
