"""Segmentation figures for the reports: lesion overlays on axial slices, nuclei contours.

Both read the ingested NIfTI files (and a predicted or reference label map on the same grid)
and write one PNG (matplotlib, Agg backend, no display needed).

- 3D volumes are turned to the closest canonical (RAS+) orientation and shown as axial slices
  in radiological convention: the patient's right on the viewer's left, anterior at the top,
  pixels at their true aspect ratio. Slices are chosen through the lesions.
- 2D tiles (``(i, j, 1)`` grey, ``(i, j, 1, 1, 3)`` RGB, i = column) are shown as stored,
  rows down the page, like the report's thumbnails; no reorientation, because a microscopy
  tile has no patient axes.
"""

from __future__ import annotations

import colorsys
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402
from scipy import ndimage  # noqa: E402

from medcnn.io.rgb import as_vector  # noqa: E402
from medcnn.report.thumbnail import display_window  # noqa: E402

#: Colour of each label value of a mask (1 = red, 2 = yellow, ...), RGB 0..1.
LABEL_COLOURS = ((1.0, 0.0, 0.0), (1.0, 0.85, 0.0), (0.0, 0.9, 1.0), (0.2, 1.0, 0.2))


def _load(path: Path, what: str) -> nib.Nifti1Image:
    try:
        return nib.load(str(path))
    except Exception as exc:  # nibabel raises several types for a broken file
        raise ValueError(f"{path}: cannot read {what}: {exc}") from exc


def _load_on_grid(
    image_path: Path, label_path: Path, what: str
) -> tuple[nib.Nifti1Image, nib.Nifti1Image]:
    """An image and its label file (``what``), checked to share one voxel grid."""
    image_path, label_path = Path(image_path), Path(label_path)
    image, label = _load(image_path, "image"), _load(label_path, what)
    _same_grid(image, label, (image_path, label_path))
    return image, label


def _same_grid(image: nib.Nifti1Image, label: nib.Nifti1Image, paths: tuple[Path, Path]) -> None:
    if image.shape[:3] != label.shape[:3] or not np.allclose(image.affine, label.affine, atol=1e-3):
        raise ValueError(
            f"{paths[1]}: label map (shape {label.shape[:3]}) is not on the grid of "
            f"{paths[0]} (shape {image.shape[:3]}); resample it to the ingest grid first"
        )


def lesion_slices(mask: np.ndarray, n_slices: int) -> list[int]:
    """Up to ``n_slices`` axial (last-axis) slice indices to show, in ascending order.

    The slice of largest cross-section of each lesion (connected component, largest lesions
    first) comes first; remaining places go to slices spread evenly over those holding any
    lesion. Without lesions, slices spread evenly over the central 80% of the volume.

    Args:
        mask: 3D label map ``(i, j, k)``, nonzero = lesion.
        n_slices: how many slices at most.

    Raises:
        ValueError: the mask is not 3D or ``n_slices`` is below 1.
    """
    if mask.ndim != 3:
        raise ValueError(f"lesion slices need a 3D mask, not shape {mask.shape}")
    if n_slices < 1:
        raise ValueError(f"n_slices {n_slices} must be at least 1")
    depth = mask.shape[2]
    labels, n = ndimage.label(mask != 0, structure=np.ones((3, 3, 3), dtype=bool))
    if n == 0:
        spread = np.linspace(0.1 * (depth - 1), 0.9 * (depth - 1), min(n_slices, depth))
        return sorted({int(round(k)) for k in spread})
    # Area of every component on every slice, from one bincount over the lesion voxels.
    _, _, ks = np.nonzero(labels)
    ids = labels[labels > 0]
    areas = np.bincount(ids * depth + ks, minlength=(n + 1) * depth).reshape(n + 1, depth)[1:]
    chosen: list[int] = []
    for component in np.argsort(-areas.sum(axis=1), kind="stable"):
        best = int(np.argmax(areas[component]))
        if best not in chosen and len(chosen) < n_slices:
            chosen.append(best)
    present = np.flatnonzero(areas.sum(axis=0))
    for index in np.linspace(0, present.size - 1, min(n_slices, present.size)):
        k = int(present[int(round(index))])
        if len(chosen) < n_slices and k not in chosen:
            chosen.append(k)
    return sorted(chosen)


def _radiological(axial: np.ndarray) -> np.ndarray:
    """An axial ``(i, j)`` slice of a RAS+ volume as displayed rows x columns: i (towards the
    patient's right) reversed along the columns, j (towards anterior) reversed down the rows."""
    return axial[::-1, ::-1].T


def overlay_slices(
    image_nii_path: Path,
    mask_nii_path: Path,
    out_png: Path,
    *,
    n_slices: int = 5,
    percentiles: Sequence[float] = (0.5, 99.5),
    panel_inches: float = 2.6,
) -> Path:
    """Axial slices through the lesions with the mask as a coloured contour and light fill.

    Args:
        image_nii_path: ingested 3D image ``(i, j, k)`` (a 4D file shows its first volume).
        mask_nii_path: integer label map on the same grid (0 background; each label value
            has its colour in :data:`LABEL_COLOURS`).
        out_png: the PNG to write (parent folders are made).
        n_slices: panels, at most (fewer when the volume has fewer slices).
        percentiles: display window from these percentiles of the whole volume.
        panel_inches: width of one panel.

    Returns:
        ``out_png``.

    Raises:
        ValueError: a file cannot be read, or the mask is not on the image's grid.
    """
    out_png = Path(out_png)
    image, mask = _load_on_grid(image_nii_path, mask_nii_path, "label map")
    image, mask = nib.as_closest_canonical(image), nib.as_closest_canonical(mask)
    data = as_vector(np.asanyarray(image.dataobj)).astype(np.float32)
    while data.ndim > 3:
        data = data[..., 0]
    labels = np.rint(np.asanyarray(mask.dataobj)).astype(np.int64)
    while labels.ndim > 3:
        labels = labels[..., 0]
    low, high, _ = display_window(data, {}, percentiles)
    zooms = image.header.get_zooms()[:3]
    slices = lesion_slices(labels, n_slices)

    fig, axes = plt.subplots(
        1, len(slices), figsize=(panel_inches * len(slices), panel_inches), squeeze=False
    )
    for ax, k in zip(axes[0], slices, strict=True):
        ax.imshow(
            _radiological(data[:, :, k]),
            cmap="gray",
            vmin=low,
            vmax=high,
            aspect=float(zooms[1] / zooms[0]),
            interpolation="nearest",
        )
        shown = _radiological(labels[:, :, k])
        for value in np.unique(shown[shown > 0]):
            colour = LABEL_COLOURS[(int(value) - 1) % len(LABEL_COLOURS)]
            inside = shown == value
            fill = np.zeros((*inside.shape, 4))
            fill[inside] = (*colour, 0.3)
            ax.imshow(fill, aspect=float(zooms[1] / zooms[0]), interpolation="nearest")
            ax.contour(inside, levels=[0.5], colors=[colour], linewidths=1.2)
        centre = image.affine @ np.array([(data.shape[0] - 1) / 2, (data.shape[1] - 1) / 2, k, 1])
        ax.set_title(f"z = {centre[2]:.1f} mm (slice {k + 1}/{data.shape[2]})", fontsize=8)
        ax.text(0.02, 0.02, "R", color="white", fontsize=8, transform=ax.transAxes)
        ax.set_axis_off()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, format="png", dpi=100, bbox_inches="tight", pad_inches=0.02)
    plt.close(fig)
    return out_png


def instance_colours(n: int) -> np.ndarray:
    """``(n, 3)`` distinct saturated RGB colours (0..1): hues a golden-ratio turn apart, so
    consecutive ids, which are often neighbours, never share a colour."""
    hues = (np.arange(n) * 0.618033988749895) % 1.0
    return np.array([colorsys.hsv_to_rgb(h, 0.9, 1.0) for h in hues]).reshape(n, 3)


def _tile_rgb(data: np.ndarray, percentiles: Sequence[float]) -> np.ndarray:
    """A 2D tile as displayed rows x columns x RGB in 0..1."""
    if data.ndim == 5:  # NIfTI vector RGB (i, j, 1, 1, 3)
        data = data[:, :, 0, 0, :]
    while data.ndim > 3 or (data.ndim == 3 and data.shape[2] != 3):
        data = data[..., 0]
    if data.dtype == np.uint8:
        scaled = data.astype(np.float32) / 255.0
    else:
        data = data.astype(np.float32)
        low, high, _ = display_window(data, {}, percentiles)
        scaled = np.clip((data - low) / (high - low), 0.0, 1.0)
    if scaled.ndim == 2:
        scaled = np.repeat(scaled[:, :, None], 3, axis=2)
    return np.transpose(scaled, (1, 0, 2))


def nuclei_contours(
    image_nii_path: Path,
    instances_nii_path: Path,
    out_png: Path,
    *,
    percentiles: Sequence[float] = (0.5, 99.5),
    min_side_px: int = 512,
) -> Path:
    """The tile with every nucleus outlined in its own colour.

    The PNG is the tile itself (no axes), enlarged by a whole factor until its longer side
    reaches ``min_side_px``; contours are one output pixel wide, drawn on the inner edge of
    each nucleus (see :func:`instance_colours`).

    Args:
        image_nii_path: ingested 2D tile, ``(i, j, 1)`` grey or ``(i, j, 1, 1, 3)`` RGB (uint8
            RGB is shown as is; other data through a percentile window).
        instances_nii_path: instance label image ``(i, j, 1)`` on the same grid.
        out_png: the PNG to write (parent folders are made).

    Returns:
        ``out_png``.

    Raises:
        ValueError: a file cannot be read, or the grids differ.
    """
    from skimage.segmentation import find_boundaries

    out_png = Path(out_png)
    image, labels = _load_on_grid(image_nii_path, instances_nii_path, "instance label image")
    rgb = _tile_rgb(as_vector(np.asanyarray(image.dataobj)), percentiles)
    instances = np.rint(np.asanyarray(labels.dataobj)).astype(np.int64)
    while instances.ndim > 2:
        instances = instances[..., 0]
    instances = instances.T  # displayed rows x columns, like the tile

    scale = max(1, -(-min_side_px // max(instances.shape)))
    rgb = np.repeat(np.repeat(rgb, scale, axis=0), scale, axis=1)
    instances = np.repeat(np.repeat(instances, scale, axis=0), scale, axis=1)
    ids, index = np.unique(instances, return_inverse=True)
    index = index.reshape(instances.shape)
    palette = np.vstack([np.zeros((1, 3)), instance_colours(ids.size)])
    if ids.size and ids[0] != 0:
        index = index + 1  # no background in the tile: keep palette row 0 unused
    edge = find_boundaries(instances, mode="inner") & (instances > 0)
    rgb[edge] = palette[index[edge]]
    out_png.parent.mkdir(parents=True, exist_ok=True)
    plt.imsave(out_png, np.clip(rgb, 0.0, 1.0), format="png")
    return out_png


def merges_and_splits(predicted: np.ndarray, reference: np.ndarray) -> dict[str, int]:
    """Merged and split nuclei of one instance segmentation against its reference.

    A predicted nucleus is a merge when two or more reference nuclei have most (> 50%) of
    their area inside it; a reference nucleus is split when two or more predicted nuclei
    lie mostly (> 50% of their own area) inside it.

    Args:
        predicted: instance label image (0 background, any ids), 2D.
        reference: the reference instance image of the same shape.

    Returns:
        ``{"merged", "split"}``: predicted nuclei that merge, reference nuclei that are split.

    Raises:
        ValueError: the shapes differ or an id is negative.
    """
    from medcnn.metrics.instances import instance_overlap

    overlap = instance_overlap(predicted, reference)
    inter = overlap.intersection  # (predicted, reference) pixel counts
    if inter.size == 0:
        return {"merged": 0, "split": 0}
    of_reference = inter > 0.5 * overlap.ref_area[None, :]
    of_predicted = inter > 0.5 * overlap.pred_area[:, None]
    return {
        "merged": int((of_reference.sum(axis=1) >= 2).sum()),
        "split": int((of_predicted.sum(axis=0) >= 2).sum()),
    }


def lesion_case_png(
    image_nii_path: Path,
    mask_nii_path: Path,
    reference_nii_path: Path | None,
    out_png: Path,
    *,
    percentiles: Sequence[float] = (0.5, 99.5),
    panel_inches: float = 2.4,
) -> Path:
    """One axial slice of a case, for a gallery: the predicted mask filled in red and the
    reference outlined in green, on the slice of the largest reference lesion (or of the
    largest predicted one without a reference), radiological view.

    Raises:
        ValueError: a file cannot be read, or a label map is not on the image's grid.
    """
    out_png = Path(out_png)
    image, mask = _load_on_grid(image_nii_path, mask_nii_path, "label map")
    reference = None
    if reference_nii_path is not None:
        _, reference = _load_on_grid(image_nii_path, reference_nii_path, "reference label map")
        reference = nib.as_closest_canonical(reference)
    image, mask = nib.as_closest_canonical(image), nib.as_closest_canonical(mask)
    data = np.asanyarray(image.dataobj).astype(np.float32)
    while data.ndim > 3:
        data = data[..., 0]
    predicted = np.rint(np.asanyarray(mask.dataobj)).reshape(data.shape) > 0
    truth = (
        np.rint(np.asanyarray(reference.dataobj)).reshape(data.shape) > 0
        if reference is not None
        else None
    )
    k = lesion_slices(truth if truth is not None and truth.any() else predicted, 1)[0]
    low, high, _ = display_window(data, {}, percentiles)
    zooms = image.header.get_zooms()[:3]
    aspect = float(zooms[1] / zooms[0])
    fig, ax = plt.subplots(figsize=(panel_inches, panel_inches))
    ax.imshow(_radiological(data[:, :, k]), cmap="gray", vmin=low, vmax=high, aspect=aspect)
    shown = _radiological(predicted[:, :, k])
    fill = np.zeros((*shown.shape, 4))
    fill[shown] = (1.0, 0.0, 0.0, 0.45)
    ax.imshow(fill, aspect=aspect, interpolation="nearest")
    if truth is not None and truth[:, :, k].any():
        ax.contour(_radiological(truth[:, :, k]), levels=[0.5], colors=["#22dd22"], linewidths=1.2)
    ax.set_title(f"slice {k + 1}/{data.shape[2]}", fontsize=8)
    ax.set_axis_off()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, format="png", dpi=90, bbox_inches="tight", pad_inches=0.02)
    plt.close(fig)
    return out_png
