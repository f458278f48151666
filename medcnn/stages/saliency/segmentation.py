"""The saliency stage of segmentation tasks: probability and uncertainty maps by mirroring.

A segmentation network's output already says *where*; what a reader needs next is *how sure*.
Each image is predicted as is and mirrored along each spatial axis (flips are exactly
invertible, see :mod:`medcnn.saliency.uncertainty`); the mean foreground probability and the
variance between the mirrored predictions are written to ``results/saliency/{task}/{subject}/``:

- ``{series}_probability.nii.gz`` and ``{series}_uncertainty.nii.gz``: on the ingest grid
  (the image's own world space), float32;
- ``{series}_uncertainty.png``: the uncertainty over the image where it is largest;
- ``saliency.json`` with ``maps: []`` and one ``segmentations`` entry per image:
  ``series``, ``label``, ``probability_map``, ``uncertainty_map``, ``overlay``,
  ``mean_uncertainty`` (over the predicted foreground), ``slice``, ``volume_ml`` (lesions) or
  ``count`` (nuclei), ``augmentations``.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from medcnn.models.bundle import load_bundle_cached
from medcnn.report.figures import overlay_png
from medcnn.stages.layout import model_dirs, subject_rows

log = logging.getLogger(__name__)


def mirrored_probabilities(
    models: list, plans: dict[str, Any], image: np.ndarray, overlap: float, device: Any = "cpu"
) -> tuple[np.ndarray, np.ndarray, int]:
    """Foreground probability and its variance over the identity and one flip per axis.

    Returns:
        ``(mean, variance, augmentations)``; ``mean``/``variance`` ``(*spatial)`` float32 in
        the preprocessed grid (foreground = 1 - background probability).
    """
    from medcnn.inference.segmentation import predict_array

    spatial = image.ndim - 1
    foreground = []
    for axis in [None, *range(spatial)]:
        shown = image if axis is None else np.flip(image, axis + 1).copy()
        prob = predict_array(models, plans, shown, device=device, overlap=overlap)
        fg = 1.0 - prob[0]
        foreground.append(fg if axis is None else np.flip(fg, axis))
    stack = np.stack(foreground)
    return stack.mean(0).astype(np.float32), stack.var(0).astype(np.float32), len(foreground)


def _shown(image: np.ndarray, heat: np.ndarray) -> tuple[np.ndarray, np.ndarray, int | None]:
    """The 2D picture: the image itself, or the 3D slice (last axis) where ``heat`` peaks."""
    grey = image.mean(axis=0)  # channels averaged (RGB tiles)
    if heat.ndim == 2:
        return grey, heat, None
    k = int(np.argmax(heat.reshape(-1, heat.shape[-1]).sum(axis=0)))
    return grey[..., k], heat[..., k], k


def _unit(values: np.ndarray) -> np.ndarray:
    low, high = np.percentile(values, [0.5, 99.5])
    return np.clip((values - low) / max(high - low, 1e-6), 0.0, 1.0)


def run_saliency_segmentation(
    config: dict[str, Any], name: str, subject: str, threads: int = 1
) -> dict[str, Any]:
    """Write the probability and uncertainty maps of ``subject``; returns ``saliency.json``."""
    import torch

    from medcnn.inference.segmentation import to_original_grid

    start = time.perf_counter()
    torch.set_num_threads(max(1, threads))
    task = config["tasks"][name]
    results = Path(config["results"])
    pre = results / "preprocess" / name
    out = results / "saliency" / name / subject
    out.mkdir(parents=True, exist_ok=True)
    from medcnn.hardware import pick_device

    device = pick_device(config["device"])
    bundles = [load_bundle_cached(folder) for folder in model_dirs(config, name)]
    models = [m.to(device) for m, _ in bundles]
    plans = bundles[0][1]["plans"]
    prediction = json.loads((results / "predict" / name / f"{subject}.json").read_text())
    by_series = {i["series"]: i for i in prediction["images"]}
    entries = []
    for row in subject_rows(config, name, subject):
        image = np.load(pre / row["array"])
        meta = json.loads((pre / row["meta"]).read_text())
        mean, variance, n = mirrored_probabilities(
            models, plans, image, float(task["segmentation"]["overlap"]), device
        )
        reference = nib.load(results / row["source"])
        stems = {}
        for kind, array in (("probability", mean), ("uncertainty", variance)):
            img = to_original_grid(array, meta, reference, mode="linear")
            path = out / f"{row['series']}_{kind}.nii.gz"
            nib.save(img, path)
            stems[kind] = path.name
        grey, heat, k = _shown(image, variance)
        peak = float(heat.max())
        picture = overlay_png(_unit(grey), heat / peak if peak > 0 else heat)
        overlay = f"{row['series']}_uncertainty.png"
        (out / overlay).write_bytes(picture)
        inside = mean >= 0.5
        predicted = by_series.get(row["series"], {})
        entry = {
            "series": row["series"],
            "label": "uncertainty (variance over mirrored predictions)",
            "probability_map": stems["probability"],
            "uncertainty_map": stems["uncertainty"],
            "overlay": overlay,
            "slice": k,
            "augmentations": n,
            "max_uncertainty": peak,
            "mean_uncertainty": float(variance[inside].mean()) if inside.any() else 0.0,
        }
        if task["kind"] == "instance_segmentation":
            entry["count"] = int(predicted.get("n_instances", 0))
        else:
            entry["volume_ml"] = float(sum((predicted.get("volume_ml") or {}).values()))
        entries.append(entry)
    summary = {
        "subject": subject,
        "task": name,
        "threshold": None,
        "seconds": round(time.perf_counter() - start, 3),
        "maps": [],
        "segmentations": entries,
    }
    (out / "saliency.json").write_text(json.dumps(summary, indent=2) + "\n")
    log.info(
        "saliency %s %s: %d uncertainty maps in %.1f s",
        name,
        subject,
        len(entries),
        summary["seconds"],
    )
    return summary
