"""The cohort report, ``results/reports/cohort.html``: held-out metrics, calibration and
subgroups per task, training curves, saliency faithfulness and the ingest summary.

Outputs of other stages are read defensively where they may legitimately be missing or
older than this code (a task with no image of the subject, metrics written by an older
trainer); a missing required file still raises, naming it. Reports are self-contained:
every figure is embedded as a ``data:`` URI (layout and templates: :mod:`medcnn.report.html`).
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medcnn import __version__
from medcnn.config import SEGMENTATION_KINDS, config_hash
from medcnn.ingest.manifest import read_files, read_manifest, read_quarantine
from medcnn.io.files import finite
from medcnn.report.figures import (
    data_uri,
    history_png,
    placeholder_png,
)
from medcnn.report.html import (
    environment,
    layout,
    now,
    readable_number,
    report_versions,
    tidy,
)
from medcnn.stages.layout import model_dirs, read_json_if_present
from medcnn.stages.report.classification import classification_cell, cohort_classification
from medcnn.stages.report.summary import calibration_extra, glance, stored_subgroups, without_bins

log = logging.getLogger(__name__)


def _history(fold_dir: Path, best_epoch: int | None) -> bytes | None:
    """The fold's training curves (:func:`medcnn.report.figures.history_png`), or None."""
    path = fold_dir / "history.csv"
    if not path.exists():
        return None
    history = pd.read_csv(path)
    if "epoch" not in history.columns or history.empty:
        return None
    numeric = [
        c for c in history.columns if c != "epoch" and pd.api.types.is_numeric_dtype(history[c])
    ]
    return history_png(
        history["epoch"].tolist(), {c: history[c].tolist() for c in numeric}, best_epoch
    )


def _file_counts(path: Path) -> dict[str, int]:
    """Files found below the inputs and how many were converted, quarantined, skipped."""
    counts = {"found": 0, "converted": 0, "quarantined": 0, "skipped": 0}
    if path.exists():
        fates = read_files(path)["fate"]
        counts.update({k: int((fates == k).sum()) for k in ("converted", "quarantined", "skipped")})
        counts["found"] = len(fates)
    return counts


def cohort_context(config: dict[str, Any]) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The cohort report's context, and its figures as PNG bytes by file stem."""
    results = Path(config["results"])
    manifest = read_manifest(results / "ingest" / "manifest.tsv")
    quarantine = read_quarantine(results / "ingest" / "quarantine.tsv")
    subjects = sorted(manifest["subject"].unique())
    missing = placeholder_png(layout()["cohort"]["placeholder"])
    figures: dict[str, bytes] = {}
    tasks, failures = [], []
    for name in sorted(config["tasks"]):
        task = _task_entry(config, name, subjects, manifest, figures, missing)
        failures += _task_failures(name, subjects, task)
        tasks.append(task)
    for t in tasks:
        # every figure file the workflow lists exists: a placeholder says why one is missing
        kinds = ("agreement",) if t["kind"] in SEGMENTATION_KINDS else ("roc", "reliability")
        for kind in kinds:
            figures.setdefault(f"{t['task']}_{kind}", missing)
        t["glance"] = glance(t)
    context = {
        "layout": layout()["cohort"],
        "summary": _ingest_summary(results, manifest, subjects),
        "quarantine": quarantine.to_dict("records"),
        "tasks": tasks,
        "subjects": _subjects_table(subjects, tasks, manifest),
        "failures": failures,
        "config_sha256": config_hash(config),
        "versions": report_versions(),
        "generated": now(),
        "version": __version__,
    }
    return context, figures


def _ingest_summary(results: Path, manifest: pd.DataFrame, subjects: list[str]) -> dict[str, Any]:
    """What ingest found: subjects, studies, images by modality, warnings and file fates."""
    return {
        "subjects": len(subjects),
        "studies": int(manifest["study"].nunique()),
        "images": len(manifest),
        "modalities": dict(sorted(Counter(manifest["modality"]).items())),
        "with_warnings": int((manifest["warnings"].fillna("") != "").sum()),
        # Every file found below the inputs, by fate (files.tsv): the counts add up.
        "files": _file_counts(results / "ingest" / "files.tsv"),
    }


def _task_entry(
    config: dict[str, Any],
    name: str,
    subjects: list[str],
    manifest: pd.DataFrame,
    figures: dict[str, bytes],
    missing: bytes,
) -> dict[str, Any]:
    """One task's part of the report (its figures are added to ``figures``)."""
    results = Path(config["results"])
    settings = config["report"]
    kind = config["tasks"][name]["kind"]
    if kind in SEGMENTATION_KINDS:
        from medcnn.stages.report.segmentation import cohort_segmentation

        evaluation = cohort_segmentation(results, name, kind, subjects, settings["bootstrap"])
    else:
        evaluation = cohort_classification(results, name, subjects, settings, manifest)
        evaluation["kind"] = kind
    for figure, png in evaluation.pop("figures").items():
        figures[f"{name}_{figure}"] = png
    folds = _fold_entries(config, name, figures, missing)
    stored = read_json_if_present(results / "models" / name / "evaluation.json")
    agreement = results / "models" / name / "evaluation.png"
    if kind in SEGMENTATION_KINDS and agreement.exists():
        figures[f"{name}_agreement"] = agreement.read_bytes()
    test = set(evaluation["split"].get("test", []))
    rows = manifest.to_dict("records")
    if kind in SEGMENTATION_KINDS:
        from medcnn.stages.report.gallery import segmentation_gallery

        gallery = segmentation_gallery(results, name, kind, evaluation["predictions"], test, rows)
    else:
        from medcnn.stages.report.gallery import classification_gallery

        gallery = classification_gallery(results, name, evaluation["predictions"], test)
    return {
        "task": name,
        "folds": folds,
        "evaluation_full": tidy(without_bins(stored)) if stored else None,
        "calibration_extra": calibration_extra(stored),
        "cross_subgroups": stored_subgroups(stored),
        "agreement": data_uri(agreement.read_bytes())
        if kind in SEGMENTATION_KINDS and agreement.exists()
        else None,
        "gallery": gallery,
        "saliency": _saliency_summary(results, name, subjects),
        "roc": _figure_uri(figures, f"{name}_roc"),
        "reliability_png": _figure_uri(figures, f"{name}_reliability"),
        **evaluation,
    }


def _figure_uri(figures: dict[str, bytes], stem: str) -> str | None:
    return data_uri(figures[stem]) if stem in figures else None


def _fold_entries(
    config: dict[str, Any], name: str, figures: dict[str, bytes], missing: bytes
) -> list[dict[str, Any]]:
    """Each fold's training curves (added to ``figures``, ``missing`` where none) and metrics."""
    folds = []
    for k, fold_dir in enumerate(model_dirs(config, name)):
        metrics = read_json_if_present(fold_dir / "metrics.json") or {}
        best = metrics.get("best_epoch")
        png = _history(fold_dir, best if isinstance(best, int) else None)
        figures[f"{name}_fold{k}_history"] = png or missing
        folds.append(
            {
                "name": f"fold {k}",
                "history": data_uri(png) if png else None,
                "metrics": metrics,
                "summary": _fold_summary(metrics),
                "full": tidy(metrics),
            }
        )
    return folds


def _fold_summary(metrics: dict[str, Any]) -> dict[str, str]:
    """The few facts of a fold a reader wants first: the kept (best or last) epoch and its
    scores, epochs run and why training stopped, images and minutes."""
    out: dict[str, str] = {}
    best = metrics.get("best")
    scores = best if isinstance(best, dict) else {}
    # ``train.keep: last`` keeps the last epoch, not the best validated one
    kept = "last" if metrics.get("kept") == "last" else "best"
    if metrics.get("best_epoch") is not None:
        out[f"{kept} epoch"] = str(metrics["best_epoch"])
    for key, value in scores.items():
        if key != "epoch" and isinstance(value, (int, float)):
            out[f"{kept} {key.replace('_', ' ')}"] = readable_number(float(value))
    for key in ("val_auroc", "val_dice", "val_mean_auroc"):
        name = f"{kept} {key.replace('_', ' ')}"
        if name not in out and isinstance(metrics.get(key), (int, float)):
            out[name] = readable_number(float(metrics[key]))
    if metrics.get("epochs_run") is not None:
        stop = metrics.get("stop_reason")
        out["epochs run"] = f"{metrics['epochs_run']}" + (f" (stopped: {stop})" if stop else "")
    for key in ("n_train_patients", "n_val_patients", "n_train_images", "n_val_images"):
        if metrics.get(key) is not None:
            out[key[2:].replace("_", " ")] = str(metrics[key])
    seconds = metrics.get("train_seconds")
    if isinstance(seconds, (int, float)):
        out["training time (min)"] = readable_number(seconds / 60)
    return out


def _task_failures(name: str, subjects: list[str], task: dict[str, Any]) -> list[dict[str, str]]:
    """Subjects with no prediction of the task, and those with unreliable saliency maps."""
    # (a subject with no image the task takes, e.g. a CT patient for a radiograph task,
    # is not a failure: its prediction lists no images)
    failures = [
        {"subject": subject, "task": name, "problem": "no prediction"}
        for subject in subjects
        if subject not in task["predictions"]
    ]
    return failures + [
        {"subject": s, "task": name, "problem": f"{n} saliency map(s) flagged unreliable"}
        for s, n in task["saliency"]["unreliable_by_subject"].items()
    ]


def _subjects_table(
    subjects: list[str], tasks: list[dict[str, Any]], manifest: pd.DataFrame
) -> list[dict[str, Any]]:
    """One row per subject: its images and a cell per task."""
    table = []
    for subject in subjects:
        cells = []
        for t in tasks:
            if t["kind"] in SEGMENTATION_KINDS:
                from medcnn.stages.report.segmentation import cohort_cell

                cells.append(cohort_cell(t["predictions"].get(subject)))
                continue
            cells.append(classification_cell(t, subject))
        table.append(
            {
                "subject": subject,
                "images": int((manifest["subject"] == subject).sum()),
                "tasks": cells,
            }
        )
    return table


def _saliency_summary(results: Path, name: str, subjects: list[str]) -> dict[str, Any]:
    """Faithfulness over the cohort: maps, median score and unreliable maps per method."""
    by_method: dict[str, list[float]] = {}
    unreliable: dict[str, int] = {}
    flagged: dict[str, int] = {}
    seconds = []
    for subject in subjects:
        saliency = read_json_if_present(results / "saliency" / name / subject / "saliency.json")
        if saliency is None:
            continue
        if saliency.get("seconds") is not None:
            seconds.append(saliency["seconds"])
        for m in saliency["maps"]:
            faith = m.get("faithfulness")
            if not faith:
                continue
            by_method.setdefault(m["method"], []).append(faith["score"])
            if faith["reliable"] is False:
                flagged[m["method"]] = flagged.get(m["method"], 0) + 1
                unreliable[subject] = unreliable.get(subject, 0) + 1
    methods = [
        {
            "method": method,
            "maps": len(scores),
            "median": float(np.median(scores)),
            "low": float(np.min(scores)),
            "high": float(np.max(scores)),
            "unreliable": flagged.get(method, 0),
        }
        for method, scores in sorted(by_method.items())
    ]
    return {
        "methods": methods,
        "unreliable_by_subject": unreliable,
        "seconds_per_subject": float(np.median(seconds)) if seconds else None,
    }


def render_cohort(config: dict[str, Any]) -> Path:
    """Write ``results/reports/cohort.html``, ``cohort.json`` and ``figures/*.png``."""
    results = Path(config["results"])
    context, figures = cohort_context(config)
    html = environment().get_template("cohort.html.j2").render(**context)
    out = results / "reports" / "cohort.html"
    (out.parent / "figures").mkdir(parents=True, exist_ok=True)
    out.write_text(html)
    # the same figures as files, for Snakemake's --report and for slides
    for stem, png in figures.items():
        (out.parent / "figures" / f"{stem}.png").write_bytes(png)
    metrics = {
        "summary": context["summary"],
        "quarantined": len(context["quarantine"]),
        "failures": context["failures"],
        "tasks": {
            t["task"]: {
                "test": t["test"],
                "calibration": t["calibration"],
                "subgroups": t["subgroups"],
                "saliency": t["saliency"],
                "folds": [f["metrics"] for f in t["folds"]],
            }
            for t in context["tasks"]
        },
    }
    (results / "reports" / "cohort.json").write_text(json.dumps(finite(metrics), indent=2) + "\n")
    # The subjects table, machine-readable: one row per subject, columns per task.
    rows = []
    for entry in context["subjects"]:
        row = {"subject": entry["subject"], "images": entry["images"]}
        for t, cell in zip(context["tasks"], entry["tasks"], strict=True):
            keys = ["probability", "predicted", "role", "unreliable", "quality_flags"]
            if t["kind"] in SEGMENTATION_KINDS:
                # total lesion volume (mL) or nucleus count
                keys = ["measure", "role"]
            for key in keys:
                row[f"{t['task']}_{key}"] = cell[key]
        rows.append(row)
    pd.DataFrame(rows).to_csv(results / "reports" / "cohort.tsv", sep="\t", index=False)
    return out
