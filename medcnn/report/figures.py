"""Small figures for the reports, as PNG bytes (matplotlib, Agg backend, no display needed).

Image arrays come in NIfTI order ``(i, j)`` = (column, row); they are shown transposed so
rows run down the page, as a radiologist expects.
"""

from __future__ import annotations

import base64
import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _png(fig: plt.Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight", pad_inches=0.02)
    plt.close(fig)
    return buf.getvalue()


def data_uri(png: bytes) -> str:
    """A ``data:`` URI, so reports embed their images and stand alone."""
    return "data:image/png;base64," + base64.b64encode(png).decode()


def image_png(image: np.ndarray, size_inches: float = 3.0) -> bytes:
    """Greyscale thumbnail of a 2D image ``(i, j)`` scaled to 0..1."""
    fig, ax = plt.subplots(figsize=(size_inches, size_inches))
    ax.imshow(image.T, cmap="gray", vmin=0.0, vmax=1.0, interpolation="lanczos")
    ax.set_axis_off()
    return _png(fig)


def overlay_png(image: np.ndarray, heat: np.ndarray, size_inches: float = 3.0) -> bytes:
    """A saliency map ``(i, j)`` in 0..1 over its image ``(i, j)``, with a colour bar."""
    fig, ax = plt.subplots(figsize=(size_inches * 1.2, size_inches))
    ax.imshow(image.T, cmap="gray", vmin=0.0, vmax=1.0, interpolation="lanczos")
    shown = ax.imshow(heat.T, cmap="jet", vmin=0.0, vmax=1.0, alpha=0.4, interpolation="bilinear")
    fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.02, label="relative saliency")
    ax.set_axis_off()
    return _png(fig)


def roc_png(fpr: np.ndarray, tpr: np.ndarray, auc: float, label: str) -> bytes:
    """ROC curve with the chance diagonal."""
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.plot(fpr, tpr, lw=2, label=f"{label} (AUROC {auc:.3f})")
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=1)
    ax.set_xlabel("1 - specificity")
    ax.set_ylabel("sensitivity")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.legend(loc="lower right")
    ax.set_aspect("equal")
    return _png(fig)


def history_png(epochs: list[int], series: dict[str, list[float]]) -> bytes:
    """Training curves: one line per named series against the epoch."""
    fig, ax = plt.subplots(figsize=(5, 3))
    for name, values in series.items():
        ax.plot(epochs, values, marker="o", ms=3, label=name)
    ax.set_xlabel("epoch")
    ax.legend()
    ax.grid(alpha=0.3)
    return _png(fig)
