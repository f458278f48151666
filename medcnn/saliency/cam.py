"""Grad-CAM maps for one subject's images, averaged over the task's folds.

Writes ``results/saliency/{task}/{subject}/{series}_gradcam.png`` (the map over the image),
``{series}_gradcam.npy`` (the map, float32 ``(size, size)`` in the preprocessed grid, 0..1) and
``saliency.json`` listing them.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.visualize import GradCAM

from medcnn.data.index import read_index
from medcnn.models.bundle import load_bundle
from medcnn.models.factory import cam_layer
from medcnn.predict.classifier import fold_dirs
from medcnn.report.figures import overlay_png

log = logging.getLogger(__name__)


def minmax_normalise(heat: torch.Tensor) -> torch.Tensor:
    """Scale each map of a batch ``(B, 1, *spatial)`` to 0..1, the most salient voxel at 1.

    MONAI's ``default_normalizer`` maps the maximum to 0 (it flips magnitudes), which would
    paint the least salient region hottest; this keeps the usual reading.
    """
    flat = heat.reshape(heat.shape[0], -1)
    low = flat.min(dim=1).values.view(-1, *[1] * (heat.ndim - 1))
    span = (flat.max(dim=1).values.view(-1, *[1] * (heat.ndim - 1)) - low).clamp_min(1e-12)
    return (heat - low) / span


def gradcam_map(
    model: torch.nn.Module, image: np.ndarray, layer: str, class_index: int = 0
) -> np.ndarray:
    """Grad-CAM of one image.

    Args:
        model: a classifier in eval mode.
        image: float32 ``(1, H, W)``.
        layer: dotted name of the target layer.
        class_index: output logit to explain.

    Returns:
        float32 ``(H, W)``, normalised to 0..1 (all zeros when the gradient is zero).
    """
    cam = GradCAM(nn_module=model, target_layers=layer, postprocessing=minmax_normalise)
    x = torch.as_tensor(image[None], dtype=torch.float32)
    heat = cam(x=x, class_idx=class_index)
    return heat[0, 0].detach().cpu().numpy().astype(np.float32)


def run_saliency(config: dict[str, Any], name: str, subject: str, threads: int = 1) -> dict:
    """Write the Grad-CAM maps of every image of ``subject``; returns ``saliency.json``."""
    torch.set_num_threads(max(1, threads))
    results = Path(config["results"])
    task = config["tasks"][name]
    pre = results / "preprocess" / name
    out = results / "saliency" / name / subject
    out.mkdir(parents=True, exist_ok=True)
    split = json.loads((results / "splits" / f"{name}.json").read_text())
    index = read_index(pre / "index.tsv")
    rows = index[index["subject"] == subject].to_dict("records")
    models = [load_bundle(folder)[0] for folder in fold_dirs(results, name, split)]
    layer = cam_layer(task["network"]["name"], task["saliency"]["target_layer"])
    maps = []
    for row in rows:
        image = np.load(pre / row["array"])
        heat = np.mean([gradcam_map(m, image, layer) for m in models], axis=0)
        np.save(out / f"{row['series']}_gradcam.npy", heat)
        (out / f"{row['series']}_gradcam.png").write_bytes(overlay_png(image[0], heat))
        maps.append(
            {
                "series": row["series"],
                "method": "gradcam",
                "layer": layer,
                "map": f"{row['series']}_gradcam.npy",
                "overlay": f"{row['series']}_gradcam.png",
            }
        )
    summary = {"subject": subject, "task": name, "maps": maps}
    (out / "saliency.json").write_text(json.dumps(summary, indent=2) + "\n")
    log.info("saliency %s %s: %d maps", name, subject, len(maps))
    return summary
