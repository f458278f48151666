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


#: A nuclei image type is "hardly seen" when fewer training images than this share (or
#: fewer than :data:`RARE_TYPE_MIN` images) were of it.
RARE_TYPE_SHARE = 0.05
RARE_TYPE_MIN = 3
#: Factor beyond the training range of nucleus diameters that is flagged.
DIAMETER_FACTOR = 1.5


def check_nuclei_image(profile: dict[str, Any] | None, image: dict[str, Any]) -> list[str]:
    """Ways in which a nuclei image falls outside the training images' profile (the plans'
    ``nuclei_profile``, :func:`medcnn.transforms.nuclei.training_profile`).

    Args:
        profile: the bundle's ``nuclei_profile`` (None, or an older bundle: no flags).
        image: the image's :func:`~medcnn.transforms.nuclei.image_profile` (``type``,
            ``diameter`` as predicted, ``p01``/``p99`` raw grey percentiles).

    Returns:
        One sentence per finding: an image type training hardly saw, a nucleus size outside
        the training sizes, a raw intensity range unlike the training images'.
    """
    flags: list[str] = []
    if not profile or not profile.get("n_images"):
        return flags
    n = int(profile["n_images"])
    seen = int(profile.get("types", {}).get(image["type"], 0))
    if seen < max(RARE_TYPE_MIN, RARE_TYPE_SHARE * n):
        flags.append(
            f"image type {image['type'].replace('_', '-')}: {seen} of the {n} training images "
            "were of this kind"
        )
    low, high, d = profile.get("diameter_min"), profile.get("diameter_max"), image.get("diameter")
    if d and low and high and not low / DIAMETER_FACTOR <= d <= high * DIAMETER_FACTOR:
        flags.append(
            f"typical nucleus {d:.0f} px across, outside the training range {low:.0f}–{high:.0f} px"
        )
    p01, p99 = profile.get("p01_min"), profile.get("p99_max")
    if p01 is not None and p99 is not None and "p99" in image:
        span = p99 - p01
        if image["p01"] < p01 - TOLERANCE * span or image["p99"] > p99 + TOLERANCE * span:
            flags.append(
                f"intensity range {image['p01']:.4g}–{image['p99']:.4g} unlike the training "
                f"images ({p01:.4g}–{p99:.4g})"
            )
    return flags
