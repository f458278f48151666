"""The saliency stage for one subject: maps, overlays and faithfulness scores.

For every image of the subject, every label the model outputs and every configured method,
writes into ``results/saliency/{task}/{subject}/``:

- ``{series}_{method}_{label}.npy``: the map, float32 in the preprocessed grid (channel
  dropped: ``(i, j)`` or ``(i, j, k)``), 0..1, averaged over the task's folds;
- ``{series}_{method}_{label}.png``: the map over the image (for 3D, over the ``k`` slice
  where the map is largest);
- ``saliency.json``::

    {"subject", "task", "threshold", "seconds",
     "maps": [{"series", "study", "method", "label", "class_index", "layer", "map",
               "overlay", "slice", "seconds",
               "faithfulness": {"score", "probability", "fractions", "morf", "lerf",
                                "threshold", "reliable"}}],
     "segmentations": []}

``segmentations`` is where a segmentation task puts its probability and TTA-uncertainty
maps (:func:`medcnn.saliency.uncertainty.tta_uncertainty`), one entry per image with
``probability_map``, ``uncertainty_map``, ``overlay`` and ``volume_ml`` or ``count``; the
report shows them when present.
"""

from __future__ import annotations

import json
import logging
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medcnn.data.labels import LabelScheme
from medcnn.hardware import model_device, native_bf16, pick_device
from medcnn.inference.classification import decision_thresholds
from medcnn.models.bundle import load_bundle_cached
from medcnn.report.figures import overlay_png
from medcnn.saliency.cam import cam_maps, saliency_map
from medcnn.saliency.faithfulness import road_score
from medcnn.saliency.layers import target_layer
from medcnn.stages.layout import model_dirs, subject_rows

log = logging.getLogger(__name__)


def safe_name(text: str) -> str:
    """A label as a file-name part (letters, digits, ``-``, ``_``)."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", str(text)).strip("-") or "label"


def ensemble_probability(models: list[torch.nn.Module], class_index: int):
    """``batch (B, C, *spatial) -> (B,)``: the folds' mean sigmoid of one output."""

    device = model_device(models[0])

    def probability(batch: torch.Tensor) -> torch.Tensor:
        batch = batch.to(device)
        with torch.no_grad():
            return torch.stack([torch.sigmoid(m(batch))[:, class_index] for m in models]).mean(0)

    return probability


def perturbation_precision(setting: str, device: torch.device | str = "cpu") -> torch.dtype | None:
    """bfloat16 or None (fp32) for the perturbed forward passes, from ``saliency.precision``."""
    if setting == "bf16" or (setting == "auto" and native_bf16(device)):
        return torch.bfloat16
    return None


def perturbed(dtype: torch.dtype | None, device: torch.device | str = "cpu"):
    """Autocast for the occlusion and faithfulness passes (plain fp32 when ``dtype`` is None)."""
    return torch.autocast(
        torch.device(device).type, dtype=dtype or torch.bfloat16, enabled=dtype is not None
    )


def shown_slice(image: np.ndarray, heat: np.ndarray) -> tuple[np.ndarray, np.ndarray, int | None]:
    """The 2D image and map to draw: the image itself, or the 3D slice where the map peaks.

    Args:
        image: ``(C, *spatial)``.
        heat: ``(*spatial)``.

    Returns:
        ``(image2d, heat2d, k)`` with ``k`` None for a 2D image.
    """
    if heat.ndim == 2:
        return image[0], heat, None
    k = int(np.argmax(heat.reshape(-1, heat.shape[-1]).sum(axis=0)))
    return image[0, ..., k], heat[..., k], k


def run_saliency(config: dict[str, Any], name: str, subject: str, threads: int = 1) -> dict:
    """Write the saliency maps and faithfulness scores of ``subject``; returns ``saliency.json``.

    Raises:
        ValueError: a configured target layer that the network lacks.
    """
    start = time.perf_counter()
    torch.set_num_threads(max(1, threads))
    results = Path(config["results"])
    task = config["tasks"][name]
    settings = task["saliency"]
    pre = results / "preprocess" / name
    out = results / "saliency" / name / subject
    out.mkdir(parents=True, exist_ok=True)
    rows = subject_rows(config, name, subject)
    device = pick_device(config["device"])
    loaded = [load_bundle_cached(folder) for folder in model_dirs(config, name)]
    # channels-last is the layout oneDNN's and cuDNN's convolutions prefer (same values)
    models = [m.to(device, memory_format=torch.channels_last) for m, _ in loaded]
    description = loaded[0][1]
    labels = list(description.get("labels") or [task["target"]["positive"]])
    # the decision threshold of each label, as prediction chooses it
    decision = decision_thresholds(
        loaded, LabelScheme.from_target(task["target"]), task["evaluation"]
    )
    maps: list[dict[str, Any]] = []
    layer = None
    for row in rows:
        image = np.load(pre / row["array"]).astype(np.float32)
        if layer is None:
            layer = target_layer(
                models[0],
                description["network"]["name"],
                int(description["network"].get("in_channels", image.shape[0])),
                image.shape[1:],
                settings["target_layer"],
            )
        for k, label in enumerate(labels):
            for entry, heat in _label_maps(models, image, layer, k, decision[k], settings, device):
                stem = f"{row['series']}_{entry['method']}_{safe_name(label)}"
                maps.append(_save_map(out, stem, row, label, image, heat, entry))
    threshold = float(settings["faithfulness_threshold"])
    summary = {
        "subject": subject,
        "task": name,
        "threshold": threshold,
        "seconds": round(time.perf_counter() - start, 3),
        "maps": maps,
        "segmentations": [],
    }
    (out / "saliency.json").write_text(json.dumps(summary, indent=2) + "\n")
    unreliable = sum(m["faithfulness"]["reliable"] is False for m in maps)
    log.info(
        "saliency %s %s: %d maps (%d below faithfulness %.3f) in %.1f s",
        name,
        subject,
        len(maps),
        unreliable,
        threshold,
        summary["seconds"],
    )
    return summary


def _label_maps(
    models: list[torch.nn.Module],
    image: np.ndarray,
    layer: str | None,
    k: int,
    decision: float,
    settings: dict[str, Any],
    device: torch.device,
):
    """Each configured method's map of output ``k`` over ``image`` with its faithfulness.

    Yields ``({"method", "layer", "class_index", "faithfulness", "t0"}, map)``; ``t0`` is
    when the map's clock started (a CAM's share of the one shared pass counts).
    """
    dtype = perturbation_precision(settings["precision"], device)
    threshold = float(settings["faithfulness_threshold"])
    cam_methods = [m for m in settings["methods"] if m in ("gradcam", "gradcampp")]
    probability = ensemble_probability(models, k)
    # the untouched image's probability, in fp32, once for all maps of this label
    base = float(probability(torch.as_tensor(image[None]))[0])
    # Grad-CAM and Grad-CAM++ of a fold come from one forward and backward pass
    t0 = time.perf_counter()
    cams = [cam_maps(m, image, layer, k, cam_methods) for m in models] if cam_methods else []
    cam_seconds = (time.perf_counter() - t0) / max(1, len(cam_methods))
    for method in settings["methods"]:
        t0 = time.perf_counter() - (cam_seconds if method in cam_methods else 0.0)
        if method in cam_methods:
            heat = np.mean([c[method] for c in cams], axis=0).astype(np.float32)
        else:
            with perturbed(dtype, device):
                heat = _perturbation_map(models, image, method, layer, k, settings)
        with perturbed(dtype, device):
            faith = road_score(
                probability, image, heat, settings["faithfulness_fractions"], base=base
            )
        _judge(faith, dtype, threshold, decision)
        entry = {
            "method": method,
            "class_index": k,
            "layer": layer if method != "occlusion" else None,
            "faithfulness": faith,
            "t0": t0,
        }
        yield entry, heat


def _save_map(
    out: Path,
    stem: str,
    row: dict[str, str],
    label: str,
    image: np.ndarray,
    heat: np.ndarray,
    entry: dict[str, Any],
) -> dict[str, Any]:
    """Write a map (``.npy``) and its overlay (``.png``); the map's ``saliency.json`` entry."""
    np.save(out / f"{stem}.npy", heat)
    image2d, heat2d, k_slice = shown_slice(image, heat)
    (out / f"{stem}.png").write_bytes(overlay_png(image2d, heat2d))
    return {
        "series": row["series"],
        "study": row["study"],
        "method": entry["method"],
        "label": label,
        "class_index": entry["class_index"],
        "layer": entry["layer"],
        "map": f"{stem}.npy",
        "overlay": f"{stem}.png",
        "slice": k_slice,
        "seconds": round(time.perf_counter() - entry["t0"], 3),
        "faithfulness": entry["faithfulness"],
    }


def _perturbation_map(
    models: list[torch.nn.Module],
    image: np.ndarray,
    method: str,
    layer: str | None,
    class_index: int,
    settings: dict[str, Any],
) -> np.ndarray:
    """A perturbation method's map (occlusion), averaged over the folds; float32 like the
    image's spatial shape."""
    mask_size = settings["occlusion"]["mask_size"] or max(1, min(image.shape[1:]) // 4)
    return np.mean(
        [
            saliency_map(
                m, image, method, layer, class_index, mask_size, settings["occlusion"]["overlap"]
            )
            for m in models
        ],
        axis=0,
    ).astype(np.float32)


def _judge(
    faith: dict[str, Any], dtype: torch.dtype | None, threshold: float, decision: float
) -> None:
    """Add to a faithfulness score its precision, threshold and verdict.

    Faithfulness asks whether removing the salient pixels removes the evidence for the call.
    An image not called positive for the label has no evidence to remove (its probability
    cannot fall), so it is not assessed, not failed.
    """
    faith["precision"] = "bf16" if dtype is not None else "fp32"
    faith["threshold"] = threshold
    faith["assessed"] = bool(faith["probability"] >= decision)
    faith["reliable"] = bool(faith["score"] >= threshold) if faith["assessed"] else None
