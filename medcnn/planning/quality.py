"""Input quality gates: is a new image like the images a model was trained on?

A model says nothing trustworthy about an image unlike its training data (a lateral view to a
frontal-view model, a CT slice to a radiograph model, a 16-bit image scaled as 8-bit). The
training data's *fingerprint* goes into the bundle's plans; each input is checked against it
and, per the configured policy, predicted and flagged or skipped.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: Relative tolerance on spacing and size ranges: a little outside the training range is
#: normal variation, far outside is a different kind of image.
TOLERANCE = 0.25


def _xy(text: str) -> list[float]:
    return [float(v) for v in str(text).split("x")[:2]]


def intensity_stats(image: np.ndarray) -> tuple[float, float]:
    """The 1st and 99th percentiles of an image's intensities (robust range)."""
    values = np.asarray(image, dtype=np.float64).ravel()
    low, high = np.percentile(values, [1.0, 99.0])
    return float(low), float(high)


def make_fingerprint(rows: list[dict[str, str]], stats: list[tuple[float, float]]) -> dict:
    """The fingerprint of a training set.

    Args:
        rows: the manifest rows of the training images.
        stats: ``intensity_stats`` of each of those images, in the same order.

    Returns:
        Ranges of modality, dims, photometric interpretation, view, spacing (mm), size
        (pixels along i and j) and the robust intensity range.
    """
    if not rows:
        return {"n_images": 0}
    spacing = np.array([_xy(r["spacing"]) for r in rows])
    shape = np.array([_xy(r["shape"]) for r in rows])
    stats_a = np.array(stats) if stats else np.zeros((0, 2))
    return {
        "n_images": len(rows),
        "modalities": sorted({r["modality"] for r in rows}),
        "dims": sorted({int(r["dims"]) for r in rows}),
        "photometric": sorted({r["photometric"] for r in rows}),
        "views": sorted({r.get("view", "") for r in rows} - {""}),
        "spacing_mm_min": spacing.min(axis=0).round(4).tolist(),
        "spacing_mm_max": spacing.max(axis=0).round(4).tolist(),
        "spacing_mm_median": np.median(spacing, axis=0).round(4).tolist(),
        "shape_min": shape.min(axis=0).astype(int).tolist(),
        "shape_max": shape.max(axis=0).astype(int).tolist(),
        "intensity_p01_min": float(stats_a[:, 0].min()) if len(stats_a) else None,
        "intensity_p99_max": float(stats_a[:, 1].max()) if len(stats_a) else None,
        "intensity_p99_min": float(stats_a[:, 1].min()) if len(stats_a) else None,
    }


def check_image(
    fingerprint: dict[str, Any], row: dict[str, str], stats: tuple[float, float] | None
) -> list[str]:
    """Ways in which one image falls outside a training fingerprint (empty: none).

    Args:
        fingerprint: from ``make_fingerprint`` (keys missing from an older bundle are skipped).
        row: the image's manifest row.
        stats: its ``intensity_stats``, or None to skip the intensity check.
    """
    flags: list[str] = []
    if not fingerprint.get("n_images"):
        return flags

    def outside(name: str, value: str, allowed: list) -> None:
        if allowed and value not in allowed:
            flags.append(f"{name} {value or 'unknown'} not in training data ({', '.join(allowed)})")

    outside("modality", row["modality"], fingerprint.get("modalities", []))
    if fingerprint.get("dims") and int(row["dims"]) not in fingerprint["dims"]:
        flags.append(f"{row['dims']}D image; the model was trained on {fingerprint['dims']}D")
    outside("photometric interpretation", row["photometric"], fingerprint.get("photometric", []))
    if row.get("view") and fingerprint.get("views"):
        outside("view", row["view"], fingerprint["views"])
    for key, label, unit in (("spacing_mm", "spacing", " mm"), ("shape", "size", " px")):
        low, high = fingerprint.get(f"{key}_min"), fingerprint.get(f"{key}_max")
        if low is None or high is None:
            continue
        value = _xy(row["spacing" if key == "spacing_mm" else "shape"])
        for axis, v in enumerate(value):
            if v < low[axis] * (1 - TOLERANCE) or v > high[axis] * (1 + TOLERANCE):
                flags.append(
                    f"{label} {v:g}{unit} along {'ij'[axis]} outside the training range "
                    f"{low[axis]:g}–{high[axis]:g}{unit}"
                )
    if stats is not None and fingerprint.get("intensity_p99_max") is not None:
        span = fingerprint["intensity_p99_max"] - fingerprint["intensity_p01_min"]
        low = fingerprint["intensity_p01_min"] - TOLERANCE * span
        high = fingerprint["intensity_p99_max"] + TOLERANCE * span
        if (
            stats[0] < low
            or stats[1] > high
            or stats[1] < fingerprint["intensity_p99_min"] - TOLERANCE * span
        ):
            flags.append(
                f"intensity range {stats[0]:.4g}–{stats[1]:.4g} unlike the training data "
                f"({fingerprint['intensity_p01_min']:.4g}–{fingerprint['intensity_p99_max']:.4g})"
            )
    return flags
