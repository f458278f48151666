"""Assemble the per-subject and cohort HTML reports from the stage outputs.

Reports are self-contained: every figure is embedded as a ``data:`` URI and the style sheet
is inline, so a report can be mailed or archived as one file and opens without a network.
Section titles and captions come from ``layout.yaml``; the page structure from the Jinja2
templates next to it.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
from collections import Counter
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import pandas as pd
import yaml
from sklearn.metrics import roc_curve

from medcnn import __version__
from medcnn.config import config_hash
from medcnn.data.index import read_index
from medcnn.ingest.manifest import read_manifest, read_quarantine
from medcnn.metrics.classification import auroc, sensitivity_specificity
from medcnn.report.figures import data_uri, history_png, image_png, roc_png

log = logging.getLogger(__name__)
HERE = Path(__file__).parent


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
    )


def _layout() -> dict[str, Any]:
    return yaml.safe_load((HERE / "layout.yaml").read_text())


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def subject_context(config: dict[str, Any], subject: str) -> dict[str, Any]:
    """Everything the subject template shows, read from the stage outputs."""
    results = Path(config["results"])
    manifest = read_manifest(results / "ingest" / "manifest.tsv")
    rows = manifest[manifest["subject"] == subject].to_dict("records")
    if not rows:
        raise ValueError(f"subject {subject} is not in the manifest")
    warnings: list[str] = []
    for row in rows:
        sidecar = json.loads((results / row["sidecar"]).read_text())
        row["source_sha256"] = sidecar["SourceSHA256"]
        warnings += [f"{row['series']}: {w}" for w in sidecar.get("Warnings", [])]

    tasks, versions = [], {"medcnn": __version__}
    for name in sorted(config["tasks"]):
        prediction = json.loads((results / "predict" / name / f"{subject}.json").read_text())
        if not prediction["images"]:
            continue
        saliency_dir = results / "saliency" / name / subject
        saliency = json.loads((saliency_dir / "saliency.json").read_text())
        maps = {m["series"]: m for m in saliency["maps"]}
        index = read_index(results / "preprocess" / name / "index.tsv")
        mine = index[index["subject"] == subject]
        arrays = dict(zip(mine["series"], mine["array"], strict=True))
        for image in prediction["images"]:
            array = np.load(results / "preprocess" / name / arrays[image["series"]])
            image["thumbnail"] = data_uri(image_png(array[0]))
            m = maps[image["series"]]
            image["overlay"] = data_uri((saliency_dir / m["overlay"]).read_bytes())
            image["layer"] = m["layer"]
        bundle = json.loads((results / "models" / name / "fold0" / "bundle.json").read_text())
        versions.update(bundle["versions"])
        versions["medcnn"] = __version__
        tasks.append(prediction)
    return {
        "layout": _layout()["subject"],
        "subject": subject,
        "studies": sorted({r["study"] for r in rows}),
        "images": rows,
        "tasks": tasks,
        "warnings": warnings,
        "versions": versions,
        "config_sha256": config_hash(config),
        "generated": _now(),
    }


def render_subject(config: dict[str, Any], subject: str) -> Path:
    """Write ``results/reports/{subject}.html``; returns its path."""
    html = _environment().get_template("subject.html.j2").render(**subject_context(config, subject))
    out = Path(config["results"]) / "reports" / f"{subject}.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(html)
    return out


def evaluate_task(results: Path, name: str, subjects: list[str]) -> dict[str, Any]:
    """Held-out metrics of a task from the per-subject predictions of its test patients."""
    split = json.loads((results / "splits" / f"{name}.json").read_text())
    labels, probs, label_name, threshold = [], [], "", 0.5
    per_subject = {}
    for subject in subjects:
        prediction = json.loads((results / "predict" / name / f"{subject}.json").read_text())
        label_name, threshold = prediction["label"], prediction["threshold"]
        per_subject[subject] = prediction
        if subject in split["test"]:
            for image in prediction["images"]:
                if image["target"] != "":
                    labels.append(int(image["target"]))
                    probs.append(image["probability"])
    labels_a, probs_a = np.array(labels), np.array(probs)
    auc = auroc(labels_a, probs_a)
    sens, spec = sensitivity_specificity(labels_a, probs_a, threshold) if labels else (np.nan,) * 2
    test = {
        "patients": len(split["test"]),
        "images": len(labels),
        "positives": int(labels_a.sum()) if labels else 0,
        "auroc": auc,
        "sensitivity": sens,
        "specificity": spec,
        "threshold": threshold,
    }
    roc = None
    if np.isfinite(auc):
        fpr, tpr, _ = roc_curve(labels_a, probs_a)
        roc = data_uri(roc_png(fpr, tpr, auc, label_name))
    return {
        "label": label_name,
        "test": test,
        "roc": roc,
        "predictions": per_subject,
        "split": split,
    }


def render_cohort(config: dict[str, Any]) -> Path:
    """Write ``results/reports/cohort.html`` and ``cohort.json`` (the metrics)."""
    results = Path(config["results"])
    manifest = read_manifest(results / "ingest" / "manifest.tsv")
    quarantine = read_quarantine(results / "ingest" / "quarantine.tsv")
    subjects = sorted(manifest["subject"].unique())
    summary = {
        "subjects": len(subjects),
        "studies": int(manifest["study"].nunique()),
        "images": len(manifest),
        "modalities": dict(sorted(Counter(manifest["modality"]).items())),
    }
    tasks = []
    for name in sorted(config["tasks"]):
        evaluation = evaluate_task(results, name, subjects)
        folds = []
        for k in range(len(evaluation["split"]["folds"])):
            fold_dir = results / "models" / name / f"fold{k}"
            history = pd.read_csv(fold_dir / "history.csv")
            png = history_png(
                history["epoch"].tolist(),
                {c: history[c].tolist() for c in ("train_loss", "val_loss", "val_auroc")},
            )
            folds.append(
                {
                    "name": f"fold {k}",
                    "history": data_uri(png),
                    "metrics": json.loads((fold_dir / "metrics.json").read_text()),
                }
            )
        tasks.append({"task": name, "folds": folds, **evaluation})
    table = []
    for subject in subjects:
        cells = []
        for t in tasks:
            images = t["predictions"][subject]["images"]
            best = max((i["probability"] for i in images), default=None)
            cells.append(
                {
                    "probability": best,
                    "predicted": any(i["predicted"] for i in images),
                    "role": t["predictions"][subject]["role"],
                }
            )
        table.append(
            {
                "subject": subject,
                "images": int((manifest["subject"] == subject).sum()),
                "tasks": cells,
            }
        )
    html = (
        _environment()
        .get_template("cohort.html.j2")
        .render(
            layout=_layout()["cohort"],
            summary=summary,
            quarantine=quarantine.to_dict("records"),
            tasks=tasks,
            subjects=table,
            generated=_now(),
            version=__version__,
        )
    )
    out = results / "reports" / "cohort.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(html)
    metrics = {
        "summary": summary,
        "quarantined": len(quarantine),
        "tasks": {
            t["task"]: {"test": t["test"], "folds": [f["metrics"] for f in t["folds"]]}
            for t in tasks
        },
    }
    (results / "reports" / "cohort.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return out
