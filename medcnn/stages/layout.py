"""Where a task's models, split and preprocessed rows are: trained here, or from a bundle.

A task is either trained by this workflow (``tasks:``; models in ``results/models/<task>/``)
or predicted with a bundle trained elsewhere (``bundles:``; its settings and plans come from
the bundle). Every stage after preprocessing asks this module, so both kinds flow through the
same predict, saliency and report code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from medcnn.config import bundle_folds
from medcnn.data.index import read_index


def is_bundle(config: dict[str, Any], name: str) -> bool:
    """True for a task predicted with a bundle from ``bundles:``."""
    return "bundle" in config["tasks"][name]


def model_dirs(config: dict[str, Any], name: str) -> list[Path]:
    """The fold bundle folders a task predicts with."""
    if is_bundle(config, name):
        return bundle_folds(config["tasks"][name]["bundle"])
    results = Path(config["results"])
    split = load_split(config, name)
    return [results / "models" / name / f"fold{k}" for k in range(len(split["folds"]))]


def load_split(config: dict[str, Any], name: str) -> dict[str, Any] | None:
    """The task's patient split; None for a bundle task (its patients are all new)."""
    if is_bundle(config, name):
        return None
    return json.loads((Path(config["results"]) / "splits" / f"{name}.json").read_text())


def subject_index_path(results: Path, name: str, subject: str) -> Path:
    """Per-subject index of a bundle task (bundle tasks preprocess one subject per job)."""
    return results / "preprocess" / name / "subjects" / f"{subject}.tsv"


def subject_rows(config: dict[str, Any], name: str, subject: str) -> list[dict[str, str]]:
    """The preprocessed images of one subject for a task (index rows)."""
    results = Path(config["results"])
    if is_bundle(config, name):
        path = subject_index_path(results, name, subject)
        return read_index(path).to_dict("records") if path.exists() else []
    index = read_index(results / "preprocess" / name / "index.tsv")
    return index[index["subject"] == subject].to_dict("records")


def read_json_if_present(path: Path) -> Any:
    """JSON of a results file that may be absent (None then: a stage not run yet)."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None


def n_folds(config: dict[str, Any], name: str) -> int:
    """Folds of a task as the workflow plans them: the bundle's, else ``split.folds``."""
    if is_bundle(config, name):
        return len(bundle_folds(config["tasks"][name]["bundle"]))
    return int(config["tasks"][name].get("split", {}).get("folds", 1))


def fold_bundle_files(config: dict[str, Any], name: str) -> list[str]:
    """The ``bundle.json`` of each fold a task predicts with (before the split exists)."""
    if is_bundle(config, name):
        return [f"{f}/bundle.json" for f in bundle_folds(config["tasks"][name]["bundle"])]
    results = config["results"]
    return [f"{results}/models/{name}/fold{k}/bundle.json" for k in range(n_folds(config, name))]


def task_index_file(config: dict[str, Any], name: str, batch: str) -> str:
    """What a batch job of a task reads: the batch's own index (bundle task) or the task's."""
    if is_bundle(config, name):
        return f"{config['results']}/preprocess/{name}/batches/{batch}.tsv"
    return f"{config['results']}/preprocess/{name}/index.tsv"


def task_split_files(config: dict[str, Any], name: str) -> list[str]:
    """The task's split file; none for a bundle task (its patients are all new)."""
    return [] if is_bundle(config, name) else [f"{config['results']}/splits/{name}.json"]
