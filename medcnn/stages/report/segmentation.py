"""What the reports show for segmentation tasks (the classification parts are in render.py).

Per image: the mask over the image (axial slices through the lesions for volumes, each
nucleus outlined for tiles), volumes and lesions or the nucleus count, the per-nucleus
morphology table (first rows shown; the whole table embedded as a CSV download, so the
report still stands alone), the scores against a reference label when there is one, and the
uncertainty maps of the saliency stage.
"""

from __future__ import annotations

import base64
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from medcnn.report.figures import data_uri
from medcnn.stages.layout import read_json_if_present

#: Rows of the nucleus table shown in the report (the CSV holds them all).
SHOWN_ROWS = 12


def mask_figure(results: Path, kind: str, image_path: Path, mask_path: Path) -> str:
    """The mask over its image as a PNG ``data:`` URI."""
    from medcnn.report.segmentation import nuclei_contours, overlay_slices

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "figure.png"
        if kind == "instance_segmentation":
            nuclei_contours(image_path, mask_path, out)
        else:
            overlay_slices(image_path, mask_path, out)
        return data_uri(out.read_bytes())


def csv_uri(path: Path) -> str:
    """A CSV file as a ``data:`` URI (a download link that needs no other file)."""
    return "data:text/csv;base64," + base64.b64encode(path.read_bytes()).decode()


def segmentation_series(
    results: Path, name: str, subject: str, prediction: dict[str, Any], manifest_rows: list[dict]
) -> dict[str, dict[str, Any]]:
    """One report entry per segmented image of a subject, by series."""
    saliency_dir = results / "saliency" / name / subject
    saliency = read_json_if_present(saliency_dir / "saliency.json") or {"segmentations": []}
    paths = {r["series"]: results / r["path"] for r in manifest_rows}
    sidecars = {r["series"]: results / r["sidecar"] for r in manifest_rows if r.get("sidecar")}
    out: dict[str, dict[str, Any]] = {}
    for image in prediction["images"]:
        mask = results / image["mask"]
        entry: dict[str, Any] = {
            "task": name,
            "kind": prediction["kind"],
            "role": prediction.get("role", ""),
            "classes": prediction.get("classes", []),
            "overlay": mask_figure(results, prediction["kind"], paths[image["series"]], mask)
            if image["series"] in paths and mask.exists()
            else None,
            "mask": image["mask"],
            "dicom_seg": image.get("dicom_seg"),
            "metrics": image.get("metrics"),
            "volume_ml": image.get("volume_ml") or {},
            "lesions": (image.get("lesions") or [])[:20],
            "n_lesions": len(image.get("lesions") or []),
            "n_instances": image.get("n_instances"),
            "median_area_px": image.get("median_area_px"),
            "image_type": image.get("image_type"),
            "quality_flags": image.get("quality_flags") or [],
            "maps": [],
            "viewer": None,
            "table_rows": None,
            "table_columns": [],
            "csv_uri": None,
            "csv_name": None,
            "segmentations": [
                {**s, "overlay": data_uri((saliency_dir / s["overlay"]).read_bytes())}
                for s in saliency.get("segmentations", [])
                if s.get("series") == image["series"] and (saliency_dir / s["overlay"]).exists()
            ],
        }
        if prediction["kind"] == "segmentation" and image["series"] in paths and mask.exists():
            entry["viewer"] = _viewer(paths[image["series"]], mask, sidecars.get(image["series"]))
        if image.get("csv") and (results / image["csv"]).exists():
            table = pd.read_csv(results / image["csv"])
            entry["csv_uri"] = csv_uri(results / image["csv"])
            entry["csv_name"] = f"{subject}_{image['series']}_nuclei.csv"
            entry["table_columns"] = list(table.columns)
            entry["table_rows"] = table.head(SHOWN_ROWS).round(3).values.tolist()
        out[image["series"]] = entry
    return out


def _viewer(image: Path, mask: Path, sidecar: Path | None) -> dict[str, Any] | None:
    """The slice viewer's volumes of a 3D image and its mask (None for a 2D image)."""
    from medcnn.report.viewer import is_volume, viewer_volumes

    if not is_volume(image):
        return None
    return viewer_volumes(image, mask, read_json_if_present(sidecar) if sidecar else None)


def metric_pairs(metrics: dict[str, Any] | None) -> list[tuple[str, Any]]:
    """Scores of one image as (name, value) rows, class-wise for semantic tasks."""
    if not metrics:
        return []
    rows: list[tuple[str, Any]] = []
    for key, value in metrics.items():
        if isinstance(value, dict):
            rows += [(f"{key} {k}", v) for k, v in value.items()]
        else:
            rows.append((key, value))
    return rows


def cohort_segmentation(
    results: Path, name: str, kind: str, subjects: list[str], bootstrap: int
) -> dict[str, Any]:
    """The held-out block of the cohort report for a segmentation task.

    A trained task's test patients (its split); a bundle task has no split, so every subject
    with a label counts.
    """
    from medcnn.metrics.summary import summarise

    split = read_json_if_present(results / "splits" / f"{name}.json") or {
        "test": subjects,
        "folds": [],
    }
    test_subjects = set(split.get("test", []))
    predictions = {}
    for subject in subjects:
        prediction = read_json_if_present(results / "predict" / name / f"{subject}.json")
        if prediction is not None:
            predictions[subject] = prediction
    held_out = [p for s, p in predictions.items() if s in test_subjects]
    test, images, _ = summarise(
        held_out, kind == "instance_segmentation", bootstrap, split.get("seed", 0)
    )
    rows = []
    for key, value in test.items():
        if isinstance(value, dict) and "mean" in value:
            ci = value["ci"]
            rows.append((key, value["mean"], ci[0], ci[1], value["n"]))
    return {
        "label": "",
        "kind": kind,
        "test": test,
        "test_rows": rows,
        "calibration": None,
        "subgroups": [],
        "figures": {},
        "predictions": predictions,
        "split": split,
        "images_scored": images,
    }


def cohort_cell(prediction: dict[str, Any] | None) -> dict[str, Any]:
    """A segmentation task's cell in the cohort's subject table: total volume or count."""
    images = (prediction or {}).get("images", [])
    if (prediction or {}).get("kind") == "instance_segmentation":
        measure = sum(int(i.get("n_instances") or 0) for i in images) if images else None
    else:
        measure = (
            round(sum(sum((i.get("volume_ml") or {}).values()) for i in images), 3)
            if images
            else None
        )
    return {
        "probability": None,
        "predicted": bool(measure),
        "measure": measure,
        "role": (prediction or {}).get("role", ""),
        "unreliable": 0,
        # images unlike the training data (nuclei: a kind, size or intensity training
        # hardly saw), marked in the cohort table as for classification
        "quality_flags": sum(bool(i.get("quality_flags")) for i in images),
    }
