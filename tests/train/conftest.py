"""A tiny preprocessed task written straight into a results folder (no ingest needed)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml

from medcnn.config import validate_config
from medcnn.data.index import write_index
from medcnn.data.split import make_split

LABELS = ("Effusion", "Mass", "Nodule")


def write_task(
    root: Path,
    n_patients: int = 12,
    size: int = 32,
    scheme: str = "binary",
    seed: int = 0,
    **task_overrides,
) -> tuple[dict, Path]:
    """Preprocessed arrays, index, plans and split of ``n_patients`` (two images each).

    Positive images carry a bright disc, so a few epochs learn something. Returns the
    validated config and the path of its YAML file.
    """
    rng = np.random.default_rng(seed)
    results = root / "results"
    pre = results / "preprocess" / "cxr"
    rows = []
    yy, xx = np.mgrid[:size, :size]
    for p in range(n_patients):
        for k in range(2):
            image = rng.normal(0.3, 0.05, (1, size, size)).astype(np.float32)
            vector = np.zeros(len(LABELS) if scheme != "binary" else 1, dtype=int)
            if scheme == "multiclass":
                vector[(p + k) % len(LABELS)] = 1
            else:
                vector[:] = rng.random(len(vector)) < 0.4
            for j in np.flatnonzero(vector):
                ci, cj = 8 + 8 * j, 8 + 8 * ((p + j) % 3)
                image[0][(yy - ci) ** 2 + (xx - cj) ** 2 < 16] += 0.5
            rel = Path("arrays") / f"sub-{p:03d}" / f"DX-{k}.npy"
            (pre / rel).parent.mkdir(parents=True, exist_ok=True)
            np.save(pre / rel, image)
            rows.append(
                {
                    "subject": f"sub-{p:03d}",
                    "study": f"ses-{p:03d}",
                    "series": f"DX-{k}",
                    "array": str(rel),
                    "target": "|".join(str(v) for v in vector),
                    "view": "PA" if k == 0 else "AP",
                }
            )
    write_index(pre / "index.tsv", rows, extra_columns=["view"])
    target = {
        "binary": {"column": "finding", "positive": "Effusion"},
        "multiclass": {"column": "finding", "classes": list(LABELS)},
        "multilabel": {"column": "finding", "labels": list(LABELS)},
    }[scheme]
    task = {
        "kind": "classification",
        "target": target,
        "preprocess": {"size": size},
        "split": {"test_fraction": 0.25, "val_fraction": 0.3},
        "train": {"epochs": 3, "batch_size": 4, "precision": "fp32", "patience": None},
        "evaluation": {"bootstrap": 50},
    }
    for key, value in task_overrides.items():
        task[key] = {**task.get(key, {}), **value} if isinstance(value, dict) else value
    raw = {
        "results": str(results),
        "logs": str(root / "logs"),
        "inputs": [str(root / "none")],
        "deid": {"secret": "test"},
        "tasks": {"cxr": task},
    }
    config = validate_config(raw)
    plans = {
        "task": "cxr",
        "size": size,
        "intensity": {"lower_percentile": 0.5, "upper_percentile": 99.5},
        "target": target,
        "subgroups": ["view"],
    }
    (pre / "plans.json").write_text(json.dumps(plans))
    from medcnn.data.index import read_index
    from medcnn.data.labels import LabelScheme

    split = make_split(
        read_index(pre / "index.tsv"),
        **config["tasks"]["cxr"]["split"],
        scheme=LabelScheme.from_target(config["tasks"]["cxr"]["target"]),
    )
    (results / "splits").mkdir(parents=True, exist_ok=True)
    (results / "splits" / "cxr.json").write_text(json.dumps({"task": "cxr", **split}))
    configfile = root / "config.yaml"
    configfile.write_text(yaml.safe_dump(raw))
    return config, configfile
