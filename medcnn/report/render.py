"""Assemble the per-subject and cohort reports from the stage outputs.

Reports are self-contained: every figure is embedded as a ``data:`` URI and the style sheet
is inline, so a report can be mailed or archived as one file and opens without a network.
Section titles and captions come from ``layout.yaml``; the page structure from the Jinja2
templates next to it. Each subject also gets a PDF of the same sections
(:mod:`medcnn.report.pdf`).

Outputs of other stages are read defensively where they may legitimately be missing or
older than this code (a task with no image of the subject, metrics written by an older
trainer); a missing required file still raises, naming it.
"""

from __future__ import annotations

import datetime as _dt
import functools
import json
import logging
import math
from collections import Counter
from importlib import metadata
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import pandas as pd
import yaml

from medcnn import __version__
from medcnn.config import config_hash
from medcnn.ingest.manifest import SUBJECT_MANIFEST, read_files, read_manifest, read_quarantine
from medcnn.io.files import finite
from medcnn.report.evaluation import binary_metrics, reliability
from medcnn.report.figures import (
    data_uri,
    history_png,
    image_png,
    placeholder_png,
    reliability_png,
    roc_png,
)
from medcnn.report.thumbnail import windowed_slice
from medcnn.tasks import model_dirs

log = logging.getLogger(__name__)
HERE = Path(__file__).parent


def _fmt(value: Any, digits: int = 3) -> str:
    """A number for a table cell: fixed digits, ``–`` for missing or NaN."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


@functools.cache
def _environment() -> jinja2.Environment:
    """The templates' environment, made once per process (compiling a template costs more
    than rendering it; a report job renders a hundred subjects)."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
    )
    env.filters["num"] = _fmt
    return env


def layout() -> dict[str, Any]:
    """Section titles and captions (``layout.yaml``)."""
    return yaml.safe_load((HERE / "layout.yaml").read_text())


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _read_json(path: Path) -> Any:
    """JSON of a file that may be absent (None then)."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None


def report_versions() -> dict[str, str]:
    """Versions of the packages that drew the report."""
    out = {"medcnn": __version__}
    for name in ("jinja2", "matplotlib", "fpdf2", "scikit-learn", "pandas"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def ingest_warnings(sidecar: dict[str, Any]) -> list[str]:
    """Ingest's own warnings plus what the sidecar shows a reader should know.

    Burned-in annotation matters twice: text in the pixels may identify the patient, and a
    network can learn to read it instead of the anatomy.
    """
    warnings = list(sidecar.get("Warnings") or [])
    if str(sidecar.get("BurnedInAnnotation", "")).upper() == "YES":
        warnings.append(
            "burned-in annotation (BurnedInAnnotation = YES): text in the pixels may identify "
            "the patient and may be read by the model"
        )
    spacing = sidecar.get("PixelSpacing") or []
    if len(spacing) == 2 and min(spacing) > 0 and max(spacing) / min(spacing) > 1.01:
        warnings.append(f"uneven pixel spacing {spacing[0]:g} x {spacing[1]:g} mm (row x column)")
    seen: set[str] = set()
    return [w for w in warnings if not (w in seen or seen.add(w))]


#: Prediction kinds of segmentation tasks (their report parts: render_segmentation.py).
SEGMENTATION_KINDS = ("segmentation", "instance_segmentation")


def _task_images(
    results: Path, name: str, subject: str, settings: dict[str, Any]
) -> dict[str, dict[str, Any]] | None:
    """A task's predictions and saliency for each series of the subject (None: no images)."""
    prediction = _read_json(results / "predict" / name / f"{subject}.json")
    if prediction is None:
        raise FileNotFoundError(results / "predict" / name / f"{subject}.json")
    if not prediction["images"]:
        return None
    if prediction.get("kind") in SEGMENTATION_KINDS:
        from medcnn.report.render_segmentation import segmentation_series

        rows = read_manifest(results / "ingest" / subject / SUBJECT_MANIFEST).to_dict("records")
        return {
            "prediction": prediction,
            "series": segmentation_series(results, name, subject, prediction, rows),
        }
    saliency_dir = results / "saliency" / name / subject
    saliency = _read_json(saliency_dir / "saliency.json") or {"maps": []}
    per_series: dict[str, dict[str, Any]] = {}
    for image in prediction["images"]:
        labels = image.get("probabilities") or {prediction["label"]: image["probability"]}
        thresholds = prediction.get("thresholds") or {}
        rows = []
        for label, p in labels.items():
            t = float(thresholds.get(label, prediction["threshold"]))
            rows.append({"label": label, "probability": p, "threshold": t, "predicted": p >= t})
        maps = []
        for m in saliency["maps"]:
            if m["series"] != image["series"]:
                continue
            faith = m.get("faithfulness") or {}
            maps.append(
                {
                    "method": m["method"],
                    "method_title": settings["methods"].get(m["method"], m["method"]),
                    "label": m.get("label", prediction["label"]),
                    "layer": m.get("layer"),
                    "slice": m.get("slice"),
                    "overlay": data_uri((saliency_dir / m["overlay"]).read_bytes()),
                    "score": faith.get("score"),
                    "threshold": faith.get("threshold"),
                    "reliable": faith.get("reliable", False),
                    "assessed": faith.get("assessed", True),
                    "morf": (faith.get("morf") or [None])[-1],
                    "lerf": (faith.get("lerf") or [None])[-1],
                    "removed": (faith.get("fractions") or [None])[-1],
                    "probability": faith.get("probability"),
                }
            )
        segmentations = []
        for s in saliency.get("segmentations", []):
            if s.get("series") == image["series"] and s.get("overlay"):
                segmentations.append(
                    {**s, "overlay": data_uri((saliency_dir / s["overlay"]).read_bytes())}
                )
        per_series[image["series"]] = {
            "task": name,
            "kind": prediction.get("kind", "binary"),
            "label": prediction["label"],
            "role": prediction.get("role", ""),
            "threshold": prediction["threshold"],
            "probability": image["probability"],
            "spread": image.get("spread"),
            "predicted": image["predicted"],
            "target": image.get("target", ""),
            "labels": rows,
            "maps": maps,
            "segmentations": segmentations,
        }
    return {"prediction": prediction, "series": per_series}


def subject_context(config: dict[str, Any], subject: str) -> dict[str, Any]:
    """Everything the subject report shows, read from the stage outputs.

    Raises:
        ValueError: the subject is not in the manifest.
    """
    results = Path(config["results"])
    settings = config["report"]
    own = results / "ingest" / subject / SUBJECT_MANIFEST
    if not own.exists():
        raise ValueError(f"subject {subject} has no manifest ({own}): not ingested")
    rows = read_manifest(own).to_dict("records")
    lay = layout()

    tasks, versions, models = {}, {}, []
    for name in sorted(config["tasks"]):
        found = _task_images(results, name, subject, lay["subject"])
        if found is None:
            continue
        tasks[name] = found["series"]
        prediction = found["prediction"]
        model = prediction["model"]
        models.append(
            {
                "task": name,
                "name": model["name"],
                "folds": list(zip(model["folds"], model["weights_sha256"], strict=False)),
            }
        )
        bundle = _read_json(model_dirs(config, name)[0] / "bundle.json") or {}
        versions.update(bundle.get("versions", {}))

    images, warnings = [], []
    labels = [r for r in rows if r.get("role", "image") not in ("image", "")]
    for row in rows:
        if row in labels:
            continue
        sidecar = json.loads((results / row["sidecar"]).read_text())
        thumbnail, window = windowed_slice(
            results / row["path"], sidecar, settings["window_percentiles"]
        )
        warnings += [{"series": row["series"], "text": w} for w in ingest_warnings(sidecar)]
        images.append(
            {
                **{k: row[k] for k in ("study", "series", "modality", "view", "shape")},
                "spacing": row["spacing"],
                "photometric": row["photometric"],
                "thumbnail": data_uri(image_png(thumbnail)),
                "window": window,
                "source_sha256": sidecar.get("SourceSHA256", ""),
                "uids": {
                    k: sidecar.get(k, "")
                    for k in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")
                },
                "tasks": [tasks[t][row["series"]] for t in tasks if row["series"] in tasks[t]],
            }
        )

    for name in tasks:
        prediction = _read_json(results / "predict" / name / f"{subject}.json") or {}
        for image in prediction.get("images", []):
            warnings += [
                {"series": image["series"], "text": f"input quality ({name}): {flag}"}
                for flag in image.get("quality_flags", [])
            ]
        for image in prediction.get("skipped", []):
            text = f"not predicted ({name}), unlike the training data: " + "; ".join(
                image["quality_flags"]
            )
            warnings.append({"series": image["series"], "text": text})

    quarantine_path = results / "ingest" / "quarantine.tsv"
    quarantined = []
    if quarantine_path.exists():
        q = read_quarantine(quarantine_path)
        # ingest knows a quarantined file's subject only sometimes (a file that cannot be
        # read has no PatientID to hash); show the ones it could attribute
        if "subject" in q.columns:
            quarantined = q[q["subject"] == subject][["file", "reason"]].to_dict("records")

    versions.update(report_versions())
    return {
        "layout": lay["subject"],
        "subject": subject,
        "studies": sorted({r["study"] for r in rows}),
        "images": images,
        "label_maps": [
            {k: r.get(k, "") for k in ("study", "series", "role", "shape", "spacing")}
            for r in labels
        ],
        "models": models,
        "warnings": warnings,
        "quarantined": quarantined,
        "versions": dict(sorted(versions.items())),
        "config_sha256": config_hash(config),
        "generated": _now(),
    }


def render_subject(config: dict[str, Any], subject: str) -> Path:
    """Write ``results/reports/{subject}.html`` and ``.pdf``; returns the HTML's path."""
    from medcnn.report.pdf import subject_pdf

    context = subject_context(config, subject)
    html = _environment().get_template("subject.html.j2").render(**context)
    out = Path(config["results"]) / "reports" / f"{subject}.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(html)
    subject_pdf(context, out.with_suffix(".pdf"))
    return out


def evaluate_task(
    results: Path, name: str, subjects: list[str], settings: dict[str, Any], manifest: pd.DataFrame
) -> dict[str, Any]:
    """Held-out metrics of a task from the per-subject predictions of its test patients."""
    # A bundle task has no split: none of its subjects was seen in training, so all count.
    split = _read_json(results / "splits" / f"{name}.json") or {"test": subjects, "folds": []}
    test = set(split.get("test", []))
    per_subject, records = {}, []
    label_name, threshold = "", 0.5
    for subject in subjects:
        prediction = _read_json(results / "predict" / name / f"{subject}.json")
        if prediction is None:
            continue
        per_subject[subject] = prediction
        label_name, threshold = prediction["label"], prediction["threshold"]
        if subject not in test:
            continue
        for image in prediction["images"]:
            if str(image.get("target", "")) in ("0", "1"):
                records.append(
                    {
                        "subject": subject,
                        "series": image["series"],
                        "label": int(image["target"]),
                        "probability": float(image["probability"]),
                    }
                )
    frame = pd.DataFrame(records, columns=["subject", "series", "label", "probability"])
    labels = frame["label"].to_numpy(dtype=float)
    probs = frame["probability"].to_numpy(dtype=float)
    metrics = binary_metrics(
        labels, probs, frame["subject"].tolist(), threshold, settings["bootstrap"]
    )
    metrics["patients"] = len(test)
    figures: dict[str, bytes] = {}
    if math.isfinite(metrics["auroc"]):
        from sklearn.metrics import roc_curve  # seconds to import: cohort report only

        fpr, tpr, _ = roc_curve(labels, probs)
        figures["roc"] = roc_png(fpr, tpr, metrics["auroc"], label_name)
    calibration = reliability(labels, probs, settings["reliability_bins"]) if len(frame) else None
    if calibration:
        figures["reliability"] = reliability_png(
            calibration["bins"], calibration["ece"], label_name
        )
    return {
        "label": label_name,
        "test": metrics,
        "calibration": calibration,
        "subgroups": _subgroups(results, frame, manifest, settings, threshold),
        "figures": figures,
        "predictions": per_subject,
        "split": split,
    }


def _subgroups(
    results: Path,
    frame: pd.DataFrame,
    manifest: pd.DataFrame,
    settings: dict[str, Any],
    threshold: float,
) -> list[dict[str, Any]]:
    """Held-out metrics per value of each configured manifest column or sidecar key."""
    if frame.empty:
        return []
    info = manifest.set_index(["subject", "series"])
    out = []
    for column in settings["subgroups"]:
        values = []
        for subject, series in zip(frame["subject"], frame["series"], strict=True):
            row = info.loc[(subject, series)] if (subject, series) in info.index else None
            if row is None:
                values.append("")
            elif column in info.columns:
                values.append(str(row[column]))
            else:
                sidecar = _read_json(results / row["sidecar"]) or {}
                values.append(str(sidecar.get(column, "")))
        values = np.array(values)
        if len(set(values)) < 2 and column not in info.columns:
            continue
        for value in sorted(set(values)):
            pick = values == value
            m = binary_metrics(
                frame["label"].to_numpy(float)[pick],
                frame["probability"].to_numpy(float)[pick],
                frame["subject"][pick].tolist(),
                threshold,
                settings["bootstrap"],
            )
            out.append({"group": column, "value": value or "(empty)", **m})
    return out


def metric_rows(metrics: Any, prefix: str = "") -> list[tuple[str, str]]:
    """Flatten a metrics JSON into ``(name, text)`` rows, intervals shown as ``x [lo, hi]``.

    Whatever the trainer writes is shown: scalars as numbers, lists of two numbers next to a
    key ending in ``_ci`` (or dicts with ``value``/``mean`` and ``low``/``high``) as
    intervals, anything else as text.
    """
    rows: list[tuple[str, str]] = []
    if not isinstance(metrics, dict):
        return [(prefix or "value", _fmt(metrics))]
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if key.endswith("_ci"):
            continue
        ci = metrics.get(f"{key}_ci")
        if isinstance(value, dict):
            centre = value.get("value", value.get("mean", value.get("estimate")))
            low = value.get("low", value.get("ci_low", value.get("lower")))
            high = value.get("high", value.get("ci_high", value.get("upper")))
            if centre is not None and low is not None and high is not None:
                rows.append((name, f"{_fmt(centre)} [{_fmt(low)}, {_fmt(high)}]"))
            else:
                rows += metric_rows(value, f"{name}.")
        elif isinstance(ci, list) and len(ci) == 2:
            rows.append((name, f"{_fmt(value)} [{_fmt(ci[0])}, {_fmt(ci[1])}]"))
        elif isinstance(value, list):
            rows.append((name, ", ".join(_fmt(v) for v in value[:20])))
        else:
            rows.append((name, _fmt(value)))
    return rows


def _history(fold_dir: Path) -> bytes | None:
    path = fold_dir / "history.csv"
    if not path.exists():
        return None
    history = pd.read_csv(path)
    if "epoch" not in history.columns or history.empty:
        return None
    # Learning curves only: clock times and speeds differ from run to run (and machine to
    # machine), and a report should not change when nothing about the model did.
    timing = {"seconds", "train_seconds", "data_wait_seconds", "images_per_second", "images"}
    numeric = [
        c
        for c in history.columns
        if c != "epoch" and c not in timing and pd.api.types.is_numeric_dtype(history[c])
    ]
    return history_png(history["epoch"].tolist(), {c: history[c].tolist() for c in numeric})


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
    settings = config["report"]
    manifest = read_manifest(results / "ingest" / "manifest.tsv")
    quarantine = read_quarantine(results / "ingest" / "quarantine.tsv")
    subjects = sorted(manifest["subject"].unique())
    summary = {
        "subjects": len(subjects),
        "studies": int(manifest["study"].nunique()),
        "images": len(manifest),
        "modalities": dict(sorted(Counter(manifest["modality"]).items())),
        "with_warnings": int((manifest["warnings"].fillna("") != "").sum()),
        # Every file found below the inputs, by fate (files.tsv): the counts add up.
        "files": _file_counts(results / "ingest" / "files.tsv"),
    }
    figures: dict[str, bytes] = {}
    tasks, failures = [], []
    for name in sorted(config["tasks"]):
        kind = config["tasks"][name]["kind"]
        if kind in SEGMENTATION_KINDS:
            from medcnn.report.render_segmentation import cohort_segmentation

            evaluation = cohort_segmentation(results, name, kind, subjects, settings["bootstrap"])
        else:
            evaluation = evaluate_task(results, name, subjects, settings, manifest)
            evaluation["kind"] = kind
        for kind, png in evaluation.pop("figures").items():
            figures[f"{name}_{kind}"] = png
        missing = placeholder_png(layout()["cohort"]["placeholder"])
        folds = []
        for k, fold_dir in enumerate(model_dirs(config, name)):
            png = _history(fold_dir)
            figures[f"{name}_fold{k}_history"] = png or missing
            metrics = _read_json(fold_dir / "metrics.json") or {}
            folds.append(
                {
                    "name": f"fold {k}",
                    "history": data_uri(png) if png else None,
                    "metrics": metrics,
                    "rows": metric_rows(metrics),
                }
            )
        cross = _read_json(results / "models" / name / "evaluation.json")
        saliency = _saliency_summary(results, name, subjects)
        # (a subject with no image the task takes, e.g. a CT patient for a radiograph task,
        # is not a failure: its prediction lists no images)
        for subject in subjects:
            if subject not in evaluation["predictions"]:
                failures.append({"subject": subject, "task": name, "problem": "no prediction"})
        failures += [
            {"subject": s, "task": name, "problem": f"{n} saliency map(s) flagged unreliable"}
            for s, n in saliency["unreliable_by_subject"].items()
        ]
        tasks.append(
            {
                "task": name,
                "folds": folds,
                "cross_validation": metric_rows(cross) if cross else [],
                "cross_subgroups": (cross or {}).get("subgroups"),
                "saliency": saliency,
                "roc": data_uri(figures[f"{name}_roc"]) if f"{name}_roc" in figures else None,
                "reliability_png": (
                    data_uri(figures[f"{name}_reliability"])
                    if f"{name}_reliability" in figures
                    else None
                ),
                **evaluation,
            }
        )
    for t in tasks:
        for kind in ("roc", "reliability"):
            figures.setdefault(f"{t['task']}_{kind}", missing)
    table = []
    for subject in subjects:
        cells = []
        for t in tasks:
            prediction = t["predictions"].get(subject, {"images": [], "role": ""})
            images = prediction["images"]
            if t["kind"] in SEGMENTATION_KINDS:
                from medcnn.report.render_segmentation import cohort_cell

                cells.append(cohort_cell(t["predictions"].get(subject)))
                continue
            cells.append(
                {
                    "probability": max((i["probability"] for i in images), default=None),
                    "predicted": any(i["predicted"] for i in images),
                    "role": prediction.get("role", ""),
                    "unreliable": t["saliency"]["unreliable_by_subject"].get(subject, 0),
                    # images outside the model's training fingerprint (predicted or skipped)
                    "quality_flags": sum(bool(i.get("quality_flags")) for i in images)
                    + len(prediction.get("skipped", [])),
                }
            )
        table.append(
            {
                "subject": subject,
                "images": int((manifest["subject"] == subject).sum()),
                "tasks": cells,
            }
        )
    context = {
        "layout": layout()["cohort"],
        "summary": summary,
        "quarantine": quarantine.to_dict("records"),
        "tasks": tasks,
        "subjects": table,
        "failures": failures,
        "config_sha256": config_hash(config),
        "versions": report_versions(),
        "generated": _now(),
        "version": __version__,
    }
    return context, figures


def _saliency_summary(results: Path, name: str, subjects: list[str]) -> dict[str, Any]:
    """Faithfulness over the cohort: maps, median score and unreliable maps per method."""
    by_method: dict[str, list[float]] = {}
    unreliable: dict[str, int] = {}
    flagged: dict[str, int] = {}
    seconds = []
    for subject in subjects:
        saliency = _read_json(results / "saliency" / name / subject / "saliency.json")
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
    html = _environment().get_template("cohort.html.j2").render(**context)
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
