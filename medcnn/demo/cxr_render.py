"""Drawing of the demo radiographs: a chest-like image with lungs, heart, ribs and noise, and
the opacity of a positive finding (pure numpy; the DICOM side is :mod:`medcnn.demo.cxr_dicom`)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], grid: int) -> np.ndarray:
    """Smooth random field of ``shape`` (rows, cols), zero mean, unit-ish amplitude."""
    coarse = rng.standard_normal((grid, grid))
    out = ndimage.zoom(
        coarse, (shape[0] / grid, shape[1] / grid), order=3, mode="nearest", grid_mode=True
    )
    return out[: shape[0], : shape[1]]


def render_radiograph(
    rng: np.random.Generator,
    rows: int,
    cols: int,
    anatomy: dict[str, float],
    positive: bool,
) -> tuple[np.ndarray, tuple[float, float, float] | None]:
    """Render one chest radiograph.

    Coordinates are in units of image rows: ``y`` in [-0.5, 0.5) from top to bottom,
    ``x`` = (column - cols / 2) / rows, so pixels are square and a narrower image shows a
    narrower field of view. The patient's left is on the image right (heart on the right).

    Returns:
        ``(brightness, opacity)``: brightness float64 of shape (rows, cols) in [0, 1]
        (1 = white/bone, MONOCHROME2 sense) and, for positives, the opacity
        (row, column, radius) in pixels, else ``None``.
    """
    a = anatomy
    y = ((np.arange(rows) + 0.5) / rows - 0.5)[:, None]
    x = ((np.arange(cols) + 0.5 - cols / 2) / rows)[None, :]
    ax = np.abs(x)

    body, tissue = _body(a, y, ax)
    mediastinum, spine = _mediastinum(a, x, y, ax)
    lung, lung_fields = _lungs(a, x, y, mediastinum)
    lung_bottom = a["lung_cy"] + a["lung_ry"]
    # Below the diaphragm domes: abdomen, as dense as the heart it merges with.
    abdomen = sigmoid((y - lung_bottom + 0.06 - 0.5 * (ax - 0.15) ** 2) / 0.02)
    ribs, clavicles = _bones(a, y, ax)

    img = 0.04 + body * tissue
    img = img - a["lung_dark"] * lung * body
    img = img + 0.12 * np.maximum(mediastinum, abdomen) * body + 0.08 * spine * body
    img = img + 0.07 * ribs * (1.0 - 0.5 * mediastinum) * body + 0.10 * clavicles * body
    # Lung markings (vessels): mid-frequency texture, denser towards the hila.
    img = img + 0.03 * lung * smooth_noise(rng, (rows, cols), 24)

    opacity = None
    if positive:
        img, opacity = _add_opacity(rng, img, a, x, y, lung_fields)

    # Low-frequency exposure variation and quantum noise.
    img = img * (1.0 + 0.05 * smooth_noise(rng, (rows, cols), 4))
    img = img + rng.normal(0.0, 0.012, size=(rows, cols))
    return np.clip(img, 0.0, 1.0), opacity


_EDGE = 0.012  # the soft edge of the body and the mediastinum (image rows)


def _body(a: dict[str, float], y: np.ndarray, ax: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The body (a soft slab narrowing to the neck at the top, shoulders around y = -0.38)
    and its soft-tissue brightness."""
    half_w = 0.11 + (a["body_half_width"] - 0.11) * sigmoid((y + 0.38) / 0.03)
    body = sigmoid((half_w - ax) / _EDGE)
    tissue = a["tissue"] + 0.12 * (1.0 - np.clip(ax / a["body_half_width"], 0, 1) ** 2)
    return body, tissue


def _mediastinum(
    a: dict[str, float], x: np.ndarray, y: np.ndarray, ax: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Heart (bulging to the image right) with the mediastinum, which cut the medial lung
    border, and the spine."""
    hx, hy = a["heart_dx"], a["lung_cy"] + a["lung_ry"] - 0.06
    rh = np.sqrt(((x - hx) / a["heart_rx"]) ** 2 + ((y - hy) / a["heart_ry"]) ** 2)
    heart = sigmoid((1.0 - rh) / 0.05)
    medi_w = 0.05 + 0.02 * sigmoid((y + 0.1) / 0.05)
    mediastinum = np.maximum(heart, sigmoid((medi_w - ax) / _EDGE) * sigmoid((y + 0.45) / 0.02))
    spine = sigmoid((0.028 - ax) / 0.008)
    return mediastinum, spine


def _lungs(
    a: dict[str, float], x: np.ndarray, y: np.ndarray, mediastinum: np.ndarray
) -> tuple[np.ndarray, list[tuple[np.ndarray, float]]]:
    """Both lungs (two ellipses, wider at the base, the costophrenic angles, apex narrower)
    and each lung's field with its centre ``x``."""
    lung = np.zeros(np.broadcast_shapes(y.shape, x.shape))
    lung_fields = []
    for side in (-1.0, 1.0):
        cx = side * a["lung_dx"]
        ry = a["lung_ry"]
        t = np.clip((y - a["lung_cy"]) / ry, -1.0, 1.0)
        rx = a["lung_rx"] * (0.85 + 0.22 * t)
        r = np.sqrt(((x - cx) / rx) ** 2 + ((y - a["lung_cy"]) / ry) ** 2)
        field = sigmoid((1.0 - r) / 0.06) * (1.0 - mediastinum)
        lung = np.maximum(lung, field)
        lung_fields.append((field, cx))
    return lung, lung_fields


def _bones(a: dict[str, float], y: np.ndarray, ax: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Posterior ribs (arches, highest at |x| ~ 0.15, fading below the lung bases) and the
    clavicles (from the sternal notch up and out towards the shoulders)."""
    lung_bottom = a["lung_cy"] + a["lung_ry"]
    ribs = np.zeros(np.broadcast_shapes(y.shape, ax.shape))
    for k in range(10):
        y0 = a["rib_start"] + k * a["rib_step"]
        yc = y0 + a["rib_bend"] * (ax - 0.15) ** 2 + 0.02 * k * ax
        ribs = np.maximum(ribs, np.exp(-(((y - yc) / 0.010) ** 2)))
    ribs *= sigmoid((ax - 0.04) / 0.01) * sigmoid((a["body_half_width"] - 0.02 - ax) / 0.02)
    ribs *= sigmoid((lung_bottom + 0.02 - y) / 0.02)
    yc = a["lung_cy"] - a["lung_ry"] - 0.01 - 0.25 * (ax - 0.05)
    clavicles = np.exp(-(((y - yc) / 0.013) ** 2)) * sigmoid((ax - 0.05) / 0.01)
    clavicles *= sigmoid((a["body_half_width"] - 0.03 - ax) / 0.015)
    return ribs, clavicles


def _add_opacity(
    rng: np.random.Generator,
    img: np.ndarray,
    a: dict[str, float],
    x: np.ndarray,
    y: np.ndarray,
    lung_fields: list[tuple[np.ndarray, float]],
) -> tuple[np.ndarray, tuple[float, float, float]]:
    """A positive finding's consolidation in one lung field: the image with it, and its
    (row, column, radius) in pixels."""
    rows, cols = img.shape
    field, cx = lung_fields[int(rng.integers(2))]
    radius = rng.uniform(0.10, 0.16) * cols / rows
    # Centre inside the chosen lung, biased laterally away from the heart border;
    # redrawn until the lung covers most of the opacity's inner disc (best of 32 kept).
    best = (-1.0, 0.0, 0.0)
    for _ in range(32):
        ox = cx + rng.uniform(-0.2, 0.45) * a["lung_rx"] * np.sign(cx)
        oy = a["lung_cy"] + rng.uniform(-0.45, 0.55) * a["lung_ry"]
        inner = (x - ox) ** 2 + (y - oy) ** 2 <= (0.5 * radius) ** 2
        cover = float(field[inner].mean()) if inner.any() else 0.0
        if cover > best[0]:
            best = (cover, ox, oy)
        if cover >= 0.85:
            break
    _, ox, oy = best
    d = np.sqrt((x - ox) ** 2 + (y - oy) ** 2)
    blob = sigmoid((radius - d) / (0.15 * radius))
    texture = 1.0 + 0.2 * smooth_noise(rng, (rows, cols), 12)
    amp = rng.uniform(0.30, 0.38)
    # Confined to the lung field: consolidated lung turns as dense as soft tissue or more.
    img = img + amp * blob * texture * field
    opacity = (
        float((oy + 0.5) * rows - 0.5),
        float(ox * rows + cols / 2 - 0.5),
        float(radius * rows),
    )
    return img, opacity
