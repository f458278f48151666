"""The per-subject report: ``results/reports/{subject}.html`` and ``.pdf``, from the ingest
sidecars and each task's prediction and saliency of the subject."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from medcnn.config import SEGMENTATION_KINDS, config_hash
from medcnn.ingest.manifest import SUBJECT_MANIFEST, read_manifest, read_quarantine
from medcnn.report.figures import (
    data_uri,
    image_png,
)
from medcnn.report.html import (
    environment,
    ingest_warnings,
    layout,
    now,
    report_versions,
)
from medcnn.report.thumbnail import windowed_slice
from medcnn.report.viewer import NIIVUE_VERSION, niivue_bundle
from medcnn.stages.layout import model_dirs, read_json_if_present

log = logging.getLogger(__name__)


def _task_images(
    results: Path, name: str, subject: str, settings: dict[str, Any]
) -> dict[str, dict[str, Any]] | None:
    """A task's predictions and saliency for each series of the subject (None: no images)."""
    prediction = read_json_if_present(results / "predict" / name / f"{subject}.json")
    if prediction is None:
        raise FileNotFoundError(results / "predict" / name / f"{subject}.json")
    if not prediction["images"]:
        return None
    if prediction.get("kind") in SEGMENTATION_KINDS:
        from medcnn.stages.report.segmentation import segmentation_series

        rows = read_manifest(results / "ingest" / subject / SUBJECT_MANIFEST).to_dict("records")
        return {
            "prediction": prediction,
            "series": segmentation_series(results, name, subject, prediction, rows),
        }
    saliency_dir = results / "saliency" / name / subject
    saliency = read_json_if_present(saliency_dir / "saliency.json") or {"maps": []}
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
    own = results / "ingest" / subject / SUBJECT_MANIFEST
    if not own.exists():
        raise ValueError(f"subject {subject} has no manifest ({own}): not ingested")
    rows = read_manifest(own).to_dict("records")
    lay = layout()
    tasks, versions, models = _subject_tasks(config, subject, lay["subject"])
    labels = [r for r in rows if r.get("role", "image") not in ("image", "")]
    images, warnings = _subject_images(
        results, [r for r in rows if r not in labels], tasks, config["report"]
    )
    warnings += _prediction_warnings(results, subject, tasks)
    versions.update(report_versions())
    viewers = any(t.get("viewer") for im in images for t in im["tasks"])
    return {
        "niivue": niivue_bundle() if viewers else None,
        "niivue_version": NIIVUE_VERSION,
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
        "quarantined": _quarantined(results, subject),
        "versions": dict(sorted(versions.items())),
        "config_sha256": config_hash(config),
        "generated": now(),
    }


def _subject_tasks(
    config: dict[str, Any], subject: str, settings: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, str], list[dict[str, Any]]]:
    """Each task's results by series (tasks with images of the subject only), the software
    versions its bundle was trained with, and the models that predicted."""
    results = Path(config["results"])
    tasks, versions, models = {}, {}, []
    for name in sorted(config["tasks"]):
        found = _task_images(results, name, subject, settings)
        if found is None:
            continue
        tasks[name] = found["series"]
        model = found["prediction"]["model"]
        models.append(
            {
                "task": name,
                "name": model["name"],
                "folds": list(zip(model["folds"], model["weights_sha256"], strict=False)),
            }
        )
        bundle = read_json_if_present(model_dirs(config, name)[0] / "bundle.json") or {}
        versions.update(bundle.get("versions", {}))
    return tasks, versions, models


def _subject_images(
    results: Path, rows: list[dict[str, Any]], tasks: dict[str, Any], settings: dict[str, Any]
) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Each image's thumbnail, identity and task results, and ingest's warnings about it."""
    images, warnings = [], []
    for row in rows:
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
    return images, warnings


def _prediction_warnings(
    results: Path, subject: str, tasks: dict[str, Any]
) -> list[dict[str, str]]:
    """Input-quality flags of the predicted images, and the images not predicted for them."""
    warnings = []
    for name in tasks:
        prediction = read_json_if_present(results / "predict" / name / f"{subject}.json") or {}
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
    return warnings


def _quarantined(results: Path, subject: str) -> list[dict[str, str]]:
    """The subject's quarantined files (file, reason)."""
    quarantine_path = results / "ingest" / "quarantine.tsv"
    if not quarantine_path.exists():
        return []
    q = read_quarantine(quarantine_path)
    # ingest knows a quarantined file's subject only sometimes (a file that cannot be
    # read has no PatientID to hash); show the ones it could attribute
    if "subject" not in q.columns:
        return []
    return q[q["subject"] == subject][["file", "reason"]].to_dict("records")


def render_subject(config: dict[str, Any], subject: str) -> Path:
    """Write ``results/reports/{subject}.html`` and ``.pdf``; returns the HTML's path."""
    from medcnn.report.pdf import subject_pdf

    context = subject_context(config, subject)
    html = environment().get_template("subject.html.j2").render(**context)
    out = Path(config["results"]) / "reports" / f"{subject}.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(html)
    subject_pdf(context, out.with_suffix(".pdf"))
    return out
