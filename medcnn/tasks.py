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

from medcnn.config import ConfigError, load_schema, validator_with_defaults
from medcnn.data.index import read_index


def bundle_folds(path: str | Path) -> list[Path]:
    """The fold bundles of a bundle folder, in fold order.

    Raises:
        ConfigError: the folder holds no ``fold<k>/bundle.json``.
    """
    folder = Path(path)
    folds = sorted(folder.glob("fold*/bundle.json"), key=lambda p: int(p.parent.name[4:]))
    if not folds:
        raise ConfigError(f"{folder}: no model bundle (fold*/bundle.json) in this folder")
    return [p.parent for p in folds]


def attach_bundles(config: dict[str, Any]) -> dict[str, Any]:
    """Add each ``bundles:`` entry to ``config['tasks']`` with the settings it was trained with.

    The task gets a ``bundle`` key (the folder) and ``quality`` (the policy). Modifies and
    returns ``config``.

    Raises:
        ConfigError: a name used for both a trained task and a bundle, or a bundle whose
            task settings no longer validate.
    """
    schema = load_schema()
    for name, entry in config.get("bundles", {}).items():
        if name in config["tasks"] and "bundle" not in config["tasks"][name]:
            raise ConfigError(f"bundles.{name}: a task of that name is also configured to train")
        folds = bundle_folds(entry["path"])
        settings = json.loads((folds[0] / "config.json").read_text())
        # A bundle written by an older medcnn lacks settings added since: their defaults.
        validator = validator_with_defaults({**schema["$defs"]["task"], "$defs": schema["$defs"]})
        errors = list(validator.iter_errors(settings))
        if errors:
            raise ConfigError(f"{folds[0] / 'config.json'}: {errors[0].message}")
        config["tasks"][name] = {
            **settings,
            "bundle": str(entry["path"]),
            "quality": entry["quality"],
        }
    return config


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
