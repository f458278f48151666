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


def overlay_png(image: np.ndarray, heat: np.ndarray, size: int = 256) -> bytes:
    """A saliency map ``(i, j)`` in 0..1 over its image ``(i, j)``, with a colour bar.

    Composed directly with a colour map and Pillow rather than a matplotlib figure: it is
    drawn for every map of every patient, and a figure costs a third of a second.
    """
    from PIL import Image, ImageDraw

    grey = np.clip(np.asarray(image, dtype=np.float32).T, 0.0, 1.0)
    colours = matplotlib.colormaps["jet"](np.clip(np.asarray(heat, dtype=np.float32).T, 0, 1))
    blend = 0.6 * grey[..., None] + 0.4 * colours[..., :3]
    picture = Image.fromarray((blend * 255).round().astype(np.uint8))
    scale = size / max(picture.size)
    shown = (max(1, round(picture.size[0] * scale)), max(1, round(picture.size[1] * scale)))
    picture = picture.resize(shown, Image.Resampling.BILINEAR)
    bar = matplotlib.colormaps["jet"](np.linspace(1.0, 0.0, shown[1]))[:, :3]
    strip = Image.fromarray((np.repeat(bar[:, None], 10, axis=1) * 255).astype(np.uint8))
    canvas = Image.new("RGB", (shown[0] + 48, shown[1]), "white")
    canvas.paste(picture, (0, 0))
    canvas.paste(strip, (shown[0] + 4, 0))
    draw = ImageDraw.Draw(canvas)
    draw.text((shown[0] + 17, 0), "high", fill="black")
    draw.text((shown[0] + 17, shown[1] - 11), "low", fill="black")
    buf = io.BytesIO()
    canvas.save(buf, format="png")
    return buf.getvalue()


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
    """Training curves: one line per named series against the epoch.

    Losses and 0..1 scores are drawn on two axes when both are present, so a loss of 5 does
    not flatten an AUROC of 0.8.
    """
    fig, ax = plt.subplots(figsize=(5, 3))
    scores = {k: v for k, v in series.items() if "loss" not in k}
    losses = {k: v for k, v in series.items() if "loss" in k}
    for name, values in (losses or scores).items():
        ax.plot(epochs, values, marker="o", ms=3, label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss" if losses else "score")
    handles, names = ax.get_legend_handles_labels()
    if losses and scores:
        right = ax.twinx()
        for i, (name, values) in enumerate(scores.items()):
            right.plot(
                epochs, values, marker="s", ms=3, ls="--", c=f"C{i + len(losses)}", label=name
            )
        right.set_ylabel("score")
        more = right.get_legend_handles_labels()
        handles, names = handles + more[0], names + more[1]
    ax.legend(handles, names, fontsize=8)
    ax.grid(alpha=0.3)
    return _png(fig)


def reliability_png(bins: list[dict], ece: float, label: str) -> bytes:
    """Reliability diagram of one label (see :func:`reliability_curves_png`)."""
    return reliability_curves_png({label: (bins, ece)})


def reliability_curves_png(curves: dict[str, tuple[list[dict], float | None]]) -> bytes:
    """Reliability diagram: observed share of positives against mean predicted probability.

    Args:
        curves: per label, its bins (``{"count", "mean_probability", "observed"}`` each, as
            :func:`medcnn.metrics.classification.calibration` returns them) and its expected
            calibration error (shown in the legend; None to leave it out).
    """
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=1, label="perfect calibration")
    for label, (bins, ece) in curves.items():
        used = [b for b in bins if b["count"]]
        if not used:
            continue
        ax.plot(
            [b["mean_probability"] for b in used],
            [b["observed"] for b in used],
            marker="o",
            lw=2,
            label=f"{label} (ECE {ece:.3f})" if ece is not None else label,
        )
        for b in used:
            ax.annotate(
                str(b["count"]),
                (b["mean_probability"], b["observed"]),
                fontsize=7,
                xytext=(3, -9),
                textcoords="offset points",
            )
    ax.set_xlabel("mean predicted probability")
    ax.set_ylabel("observed share positive")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_aspect("equal")
    ax.legend(loc="upper left", fontsize=8)
    return _png(fig)


def placeholder_png(text: str) -> bytes:
    """A small figure saying why the real one is missing (a figure output must exist)."""
    fig, ax = plt.subplots(figsize=(4, 1.2))
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True, fontsize=9, color="#555")
    ax.set_axis_off()
    return _png(fig)


def agreement_png(points: list[tuple[float, float]], what: str) -> bytes:
    """Predicted against reference (one point per image) with the identity line."""
    fig, ax = plt.subplots(figsize=(4, 4))
    if points:
        ref, pred = np.array(points, dtype=float).T
        ax.scatter(ref, pred, s=18, alpha=0.8)
        top = max(float(ref.max()), float(pred.max()), 1e-6) * 1.05
    else:
        top = 1.0
    ax.plot([0, top], [0, top], ls="--", c="grey", lw=1)
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    ax.set_xlabel(f"reference {what}")
    ax.set_ylabel(f"predicted {what}")
    ax.set_aspect("equal")
    return _png(fig)
