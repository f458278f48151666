"""The cohort report's gallery: the cases of a task a reader should look at, each linking
to its patient's report.

- classification: the most confident errors among the held-out images (false positives
  with the highest probability, false negatives with the lowest), with their Grad-CAM map;
- segmentation: the held-out images with the lowest Dice, prediction and reference drawn
  on the slice of the largest reference lesion;
- instance segmentation: the images with the most merged or split nuclei (from the
  prediction's own counts when it has them, else counted here from the masks).
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from medcnn.data.index import read_index
from medcnn.report.figures import data_uri
from medcnn.stages.layout import read_json_if_present

log = logging.getLogger(__name__)

#: Cases in a task's gallery.
GALLERY_SIZE = 6


def _href(subject: str, series: str) -> str:
    return f"{subject}.html#series-{series}"


def classification_gallery(
    results: Path, name: str, predictions: dict[str, Any], test: set[str], n: int = GALLERY_SIZE
) -> list[dict[str, Any]]:
    """The ``n`` most confident errors among the test patients' labelled images."""
    errors = []
    for subject, prediction in predictions.items():
        if subject not in test:
            continue
        for image in prediction["images"]:
            target = str(image.get("target", ""))
            if target not in ("0", "1"):
                continue
            p, called = float(image["probability"]), bool(image["predicted"])
            if called == (target == "1"):
                continue
            errors.append(
                {
                    "subject": subject,
                    "series": image["series"],
                    "error": "false positive" if called else "false negative",
                    "probability": p,
                    "threshold": float(prediction["threshold"]),
                    # how sure the wrong call was: distance of p from the wrong side's end
                    "confidence": p if called else 1.0 - p,
                }
            )
    errors.sort(key=lambda e: -e["confidence"])
    shown = []
    for e in errors[:n]:
        saliency_dir = results / "saliency" / name / e["subject"]
        saliency = read_json_if_present(saliency_dir / "saliency.json") or {"maps": []}
        maps = [m for m in saliency["maps"] if m["series"] == e["series"]]
        # Grad-CAM first (the map a reader knows), else whichever the run made
        maps.sort(key=lambda m: (m["method"] != "gradcam", m["method"]))
        picture = None
        if maps and (saliency_dir / maps[0]["overlay"]).exists():
            picture = data_uri((saliency_dir / maps[0]["overlay"]).read_bytes())
        shown.append(
            {
                **e,
                "href": _href(e["subject"], e["series"]),
                "picture": picture,
                "method": maps[0]["method"] if maps else None,
            }
        )
    return shown


def _references(results: Path, name: str) -> dict[tuple[str, str], Path]:
    """Reference label map of each (subject, series) the task's index knows."""
    path = results / "preprocess" / name / "index.tsv"
    if not path.exists():
        return {}
    index = read_index(path)
    if "label_source" not in index.columns:
        return {}
    return {
        (r["subject"], r["series"]): results / r["label_source"]
        for r in index.to_dict("records")
        if isinstance(r.get("label_source"), str) and r["label_source"]
    }


def _image_paths(manifest_rows: list[dict[str, Any]], results: Path) -> dict[tuple, Path]:
    return {(r["subject"], r["series"]): results / r["path"] for r in manifest_rows}


def _dice_of(metrics: dict[str, Any]) -> float | None:
    """The (first class's) Dice of one image's scores."""
    for value in metrics.values():
        if isinstance(value, dict) and isinstance(value.get("dice"), (int, float)):
            return float(value["dice"])
    dice = metrics.get("dice")
    return float(dice) if isinstance(dice, (int, float)) else None


def segmentation_gallery(
    results: Path,
    name: str,
    kind: str,
    predictions: dict[str, Any],
    test: set[str],
    manifest_rows: list[dict[str, Any]],
    n: int = GALLERY_SIZE,
) -> list[dict[str, Any]]:
    """Lowest-Dice held-out images (lesions) or those with most merged and split nuclei."""
    from medcnn.report.segmentation import lesion_case_png, nuclei_contours

    references = _references(results, name)
    images = _image_paths(manifest_rows, results)
    cases = []
    for subject, prediction in predictions.items():
        held_out = subject in test
        for image in prediction["images"]:
            key = (subject, image["series"])
            metrics = image.get("metrics") or {}
            if not metrics or key not in images:
                continue
            case = {"subject": subject, "series": image["series"], "held_out": held_out}
            if kind == "instance_segmentation":
                counts = _nuclei_counts(image, metrics, results, references.get(key))
                if counts is None:
                    continue
                case.update(counts, dice=metrics.get("dice"), aji=metrics.get("aji"))
                case["rank"] = -(counts["merged"] + counts["split"])
            else:
                dice = _dice_of(metrics)
                if dice is None:
                    continue
                case.update(dice=dice, rank=dice)
                first = next((v for v in metrics.values() if isinstance(v, dict)), {})
                case["hd95_mm"] = first.get("hd95_mm")
            cases.append(case)
    # held-out cases first: they are the honest ones (training images are fitted)
    if any(c["held_out"] for c in cases):
        cases = [c for c in cases if c["held_out"]]
    cases.sort(key=lambda c: (c["rank"], c["subject"], c["series"]))
    shown = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, case in enumerate(cases[:n]):
            key = (case["subject"], case["series"])
            prediction = predictions[case["subject"]]
            mask = next(
                results / im["mask"]
                for im in prediction["images"]
                if im["series"] == case["series"]
            )
            out = Path(tmp) / f"{i}.png"
            try:
                if kind == "instance_segmentation":
                    nuclei_contours(images[key], mask, out, min_side_px=256)
                else:
                    lesion_case_png(images[key], mask, references.get(key), out)
                picture = data_uri(out.read_bytes())
            except ValueError as exc:  # a case that cannot be drawn is named, not fatal
                log.warning("gallery %s: %s", name, exc)
                picture = None
            shown.append({**case, "href": _href(*key), "picture": picture})
    return shown


def _nuclei_counts(
    image: dict[str, Any], metrics: dict[str, Any], results: Path, reference: Path | None
) -> dict[str, int] | None:
    """Merged and split nuclei of an image: the prediction's own counts when present."""
    own = {k: metrics.get(k) for k in ("merged", "split")}
    if all(isinstance(v, (int, float)) for v in own.values()):
        return {k: int(v) for k, v in own.items()}
    if reference is None or not reference.exists():
        return None
    from medcnn.report.segmentation import merges_and_splits

    predicted = np.asarray(nib.load(results / image["mask"]).dataobj)
    truth = np.asarray(nib.load(reference).dataobj).reshape(predicted.shape)
    squeeze = tuple(range(2, predicted.ndim))
    return merges_and_splits(
        np.rint(predicted).astype(np.int64).squeeze(squeeze) if squeeze else predicted,
        np.rint(truth).astype(np.int64).squeeze(squeeze) if squeeze else truth,
    )
