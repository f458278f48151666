"""The predict stage of segmentation tasks: masks on the ingest grid, measurements, scores.

For every image of a subject (the task's index rows), writes into
``results/predict/{task}/{subject}/``:

- ``{series}_mask.nii.gz``: the label map in the image's own world space (the ingest NIfTI's
  shape and affine; lesions as class values, nuclei as instance ids);
- ``{series}_seg.dcm``: the same as DICOM SEG (highdicom) when the image came from DICOM and
  ``segmentation.dicom_seg`` is on;
- ``{series}_nuclei.csv`` (instance tasks): one row per nucleus (area, perimeter,
  eccentricity, mean intensity, centroid; :func:`medcnn.metrics.segmentation.morphology_table`);

and ``results/predict/{task}/{subject}.json``::

    {"subject", "task", "kind", "role", "classes", "model": {...},
     "images": [{"study", "series", "mask", "dicom_seg", "csv",
                 "volume_ml": {class: mL}, "lesions": [{"id", "voxels", "volume_ml",
                 "centroid_mm"}], "n_instances", "metrics": {...} or null,
                 "image_type", "nucleus_diameter_px", "diameter_source",
                 "quality_flags": [...]}]}

Nuclei images carry ``quality_flags``: the ways the image is unlike the training images
(:func:`nuclei_quality`); the subject report shows them as warnings and the cohort table
marks the image.

``metrics`` are against the image's label map when it has one (Dice, HD95 in mm and
lesion-wise detection for lesions; Dice, AJI, PQ/SQ/DQ and F1 at IoU 0.5 for nuclei).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from medcnn.config import tta_enabled
from medcnn.data.split import subject_role
from medcnn.io.files import finite
from medcnn.models.bundle import ensemble_summary, load_bundle_cached
from medcnn.postprocess.components import drop_small, keep_largest
from medcnn.stages.layout import load_split, model_dirs, subject_rows

log = logging.getLogger(__name__)


def spacing_of(img: nib.Nifti1Image) -> list[float]:
    """mm per voxel along the NIfTI's array axes (column norms of the affine)."""
    return [float(v) for v in np.sqrt((img.affine[:3, :3] ** 2).sum(axis=0))]


def intensity_image(img: nib.Nifti1Image) -> np.ndarray:
    """A 2D ingest image as ``(i, j)`` grey or ``(i, j, 3)`` RGB for the morphology table."""
    data = np.asarray(img.dataobj)
    if data.dtype.names:  # NIfTI RGB record type
        data = np.stack([data[n] for n in data.dtype.names], axis=-1)
    data = np.squeeze(data)
    return data.astype(np.float32)


def semantic_outputs(
    label: np.ndarray,
    reference: np.ndarray | None,
    img: nib.Nifti1Image,
    classes: list[str],
) -> dict[str, Any]:
    """Volumes per class, the lesions of the first class, and scores against a reference."""
    from medcnn.metrics.segmentation import (
        component_volumes,
        dice,
        hd95,
        lesion_detection,
        volumes_ml,
    )

    spacing = spacing_of(img)
    volumes = volumes_ml(label, spacing)
    out: dict[str, Any] = {
        "volume_ml": {name: float(volumes.get(k, 0.0)) for k, name in enumerate(classes[1:], 1)},
        "lesions": component_volumes(label > 0, spacing, img.affine if label.ndim == 3 else None),
        "metrics": None,
    }
    if reference is not None:
        metrics: dict[str, Any] = {}
        for k, name in enumerate(classes[1:], 1):
            pred_k, ref_k = label == k, reference == k
            detection = lesion_detection(pred_k, ref_k, spacing)
            metrics[name] = {
                "dice": dice(pred_k, ref_k),
                "hd95_mm": hd95(pred_k, ref_k, spacing),
                "lesions_detected": detection["tp"],
                "lesions_missed": detection["fn"],
                "false_positive_lesions": detection["fp"],
                "lesion_sensitivity": detection["sensitivity"],
                "lesion_precision": detection["precision"],
                "reference_volume_ml": float(ref_k.sum() * np.prod(spacing) / 1000.0),
            }
        out["metrics"] = metrics
    return out


def instance_outputs(
    label: np.ndarray, reference: np.ndarray | None, img: nib.Nifti1Image, csv_path: Path
) -> dict[str, Any]:
    """Nucleus count, the morphology table (written as CSV) and instance scores."""
    from medcnn.metrics.instances import instance_metrics, morphology_table

    table = morphology_table(label, intensity_image(img))
    table.to_csv(csv_path, index=False, float_format="%.4g")
    out: dict[str, Any] = {"n_instances": int(len(table)), "metrics": None}
    if len(table):
        out["median_area_px"] = float(table["area_px"].median())
    if reference is not None:
        out["metrics"] = instance_metrics(label, reference)
        out["reference_instances"] = int(len(np.unique(reference[reference > 0])))
    return out


def run_predict_segmentation(
    config: dict[str, Any], name: str, subject: str, threads: int = 1
) -> dict[str, Any]:
    """Segment every image of ``subject`` for task ``name``; returns the JSON written."""
    import torch

    from medcnn.hardware import pick_device

    torch.set_num_threads(max(1, threads))
    task = config["tasks"][name]
    results = Path(config["results"])
    device = pick_device(config["device"])
    split = load_split(config, name)
    bundles = [load_bundle_cached(folder) for folder in model_dirs(config, name)]
    models = [m.to(device) for m, _ in bundles]
    first = bundles[0][1]
    classes = list(first["plans"]["classes"])
    out = results / "predict" / name / subject
    images = []
    for row in subject_rows(config, name, subject):
        label_img, meta = segment_image(models, first, task, results / row["source"], device)
        out.mkdir(parents=True, exist_ok=True)
        mask_path = out / f"{row['series']}_mask.nii.gz"
        nib.save(label_img, mask_path)
        entry: dict[str, Any] = {
            "study": row["study"],
            "series": row["series"],
            "mask": str(mask_path.relative_to(results)),
            "dicom_seg": None,
            "csv": None,
        }
        entry.update(_measurements(results, row, task, label_img, classes, out))
        if task["kind"] == "instance_segmentation":
            entry.update(nuclei_quality(first["plans"], nib.load(results / row["source"]), meta))
        if task["segmentation"]["dicom_seg"] and task["dims"] == 3:
            entry["dicom_seg"] = _dicom_seg(results, row, label_img, classes, out)
        images.append(entry)
    result = {
        "subject": subject,
        "task": name,
        "kind": task["kind"],
        "role": subject_role(split, subject) if split else "new",
        "classes": classes,
        "model": ensemble_summary(bundles),
        "images": images,
    }
    path = results / "predict" / name / f"{subject}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(finite(result), indent=2) + "\n")
    log.info("predict %s %s: %d images segmented", name, subject, len(images))
    return result


def nuclei_quality(
    plans: dict[str, Any], img: nib.Nifti1Image, meta: dict[str, Any]
) -> dict[str, Any]:
    """A nuclei image's type, the nucleus diameter prediction used, and its ``quality_flags``
    against the training images' profile (:func:`medcnn.planning.quality.check_nuclei_image`:
    a kind of image training hardly saw, nuclei of another size, another intensity range)."""
    from medcnn.planning.quality import check_nuclei_image
    from medcnn.transforms.nuclei import image_profile

    data = intensity_image(img)
    channels = data[None] if data.ndim == 2 else np.moveaxis(data, -1, 0)
    nuclei = meta.get("nuclei") or {}
    profile = image_profile(channels, nuclei.get("diameter"))
    return {
        "image_type": profile["type"],
        "nucleus_diameter_px": profile["diameter"],
        "diameter_source": nuclei.get("diameter_source"),
        "quality_flags": check_nuclei_image(plans.get("nuclei_profile"), profile),
    }


def segment_image(
    models: list[Any],
    bundle: dict[str, Any],
    task: dict[str, Any],
    source: Path,
    device: Any,
    *,
    with_probabilities: bool = False,
) -> tuple[Any, ...]:
    """The label map of one ingest image on its grid, small components dropped (and only the
    largest kept) as the task asks, and its preprocessing meta (what the benchmark and the
    predict stage both call); ``with_probabilities``: and the class probabilities on that
    grid, ``(classes, *spatial)``."""
    from medcnn.inference.segmentation import predict_labels

    seg = task["segmentation"]
    label_img, prob, meta = predict_labels(
        models,
        bundle["plans"],
        source,
        device=device,
        flips=tta_enabled(task),
        overlap=float(seg["overlap"]),
        postprocess=_postprocess(bundle, seg) if task["kind"] == "instance_segmentation" else None,
    )
    if task["kind"] == "segmentation" and (seg["min_size"] or seg["largest_component"]):
        label = drop_small(np.asarray(label_img.dataobj), int(seg["min_size"]))
        if seg["largest_component"]:
            label = keep_largest(label)
        label_img = nib.Nifti1Image(label.astype(np.uint8), label_img.affine, label_img.header)
    return (label_img, meta, prob) if with_probabilities else (label_img, meta)


def _measurements(
    results: Path,
    row: dict[str, Any],
    task: dict[str, Any],
    label_img: nib.Nifti1Image,
    classes: list[str],
    out: Path,
) -> dict[str, Any]:
    """An image's volumes and lesions, or nuclei and their table (the CSV's path with them),
    and the scores against its label map when it has one."""
    label = np.asarray(label_img.dataobj)
    reference = None
    if row.get("label_source"):
        reference = np.asarray(nib.load(results / row["label_source"]).dataobj)
        reference = reference.reshape(label.shape)
    img = nib.load(results / row["source"])
    if task["kind"] == "instance_segmentation":
        csv_path = out / f"{row['series']}_nuclei.csv"
        entry = instance_outputs(_plane(label), _plane(reference), img, csv_path)
        entry["csv"] = str(csv_path.relative_to(results))
        return entry
    if task["dims"] != 2:
        return semantic_outputs(label, reference, img, classes)
    return semantic_outputs(label[..., 0], _plane(reference), img, classes)


def _plane(array: np.ndarray | None) -> np.ndarray | None:
    """A 2D task's ``(i, j, 1)`` array as ``(i, j)`` (None stays None)."""
    if array is None:
        return None
    return array[..., 0] if array.ndim == 3 else array


def _postprocess(bundle: dict[str, Any], seg: dict[str, Any]) -> dict[str, Any]:
    """Watershed settings: chosen on validation images at training (bundle), else defaults."""
    chosen = {
        k: v
        for k, v in (bundle.get("postprocess") or {}).items()
        if not k.startswith("validation_")
    }
    return {**chosen, "min_size": int(seg["min_size"])}


def _dicom_seg(
    results: Path, row: dict[str, str], label_img: nib.Nifti1Image, classes: list[str], out: Path
) -> str | None:
    """DICOM SEG of a mask when its image came from DICOM; None (logged) otherwise."""
    from medcnn.io.seg import write_dicom_seg

    sidecar_path = (results / row["source"]).with_name(
        Path(row["source"]).name.replace(".nii.gz", ".json")
    )
    try:
        sidecar = json.loads(sidecar_path.read_text())
    except (OSError, ValueError):
        return None
    if not sidecar.get("SliceSOPInstanceUIDs"):
        return None  # not from single-frame DICOM slices: nothing to reference
    path = out / f"{row['series']}_seg.dcm"
    try:
        write_dicom_seg(label_img, sidecar, path, classes[1:])
    except ValueError as exc:
        log.warning("%s: no DICOM SEG: %s", row["series"], exc)
        return None
    return str(path.relative_to(results))
