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


#: History columns that are not learning curves: clock times, speeds and amounts of data
#: differ from run to run and machine to machine, and would flatten every score drawn beside them.
NOT_CURVES = ("seconds", "per_second", "patches", "images", "samples", "steps", "time")


def curve_panels(series: dict[str, list[float]]) -> dict[str, dict[str, list[float]]]:
    """Training-history columns by the axis they belong on.

    ``loss`` (names with "loss"), ``score`` (every value within [0, 1]: Dice, AUROC, ...),
    ``learning rate`` (``lr``, ``learning_rate``; drawn on a log axis) and ``other`` (its
    own axis). Timing and data-amount columns (:data:`NOT_CURVES`) and columns with no
    finite value are left out.
    """
    panels: dict[str, dict[str, list[float]]] = {
        "loss": {},
        "score": {},
        "learning rate": {},
        "other": {},
    }
    for name, values in series.items():
        if name == "epoch" or any(part in name for part in NOT_CURVES):
            continue
        finite = np.array([v for v in values if v is not None], dtype=float)
        finite = finite[np.isfinite(finite)]
        if finite.size == 0:
            continue
        if "loss" in name:
            panels["loss"][name] = values
        elif name in ("lr", "learning_rate"):
            panels["learning rate"][name] = values
        elif finite.min() >= 0.0 and finite.max() <= 1.0:
            panels["score"][name] = values
        else:
            panels["other"][name] = values
    return {k: v for k, v in panels.items() if v}


def history_png(
    epochs: list[int], series: dict[str, list[float]], best_epoch: int | None = None
) -> bytes:
    """Training curves against the epoch, one panel per kind of quantity.

    Each quantity on an axis of its own scale (:func:`curve_panels`): losses, scores on
    [0, 1], the learning rate on a log axis, anything else apart; the best validation epoch
    (the weights kept) as a dashed line. ``epochs`` as the trainer counts them.
    """
    panels = curve_panels(series)
    n = max(1, len(panels))
    fig, axes = plt.subplots(1, n, figsize=(3.3 * n, 2.6), squeeze=False)
    for ax, (what, curves) in zip(axes[0], panels.items(), strict=False):
        for i, (name, values) in enumerate(curves.items()):
            ax.plot(epochs, values, marker="o", ms=2.5, lw=1.4, c=f"C{i}", label=name)
        if what == "score":
            ax.set_ylim(0, 1.01)
        elif what == "learning rate":
            positive = [v for c in curves.values() for v in c if v and v > 0]
            if positive:
                ax.set_yscale("log")
        if best_epoch is not None:
            ax.axvline(best_epoch, ls="--", lw=1, c="grey")
        ax.set_title(what, fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    if not panels:
        axes[0][0].set_axis_off()
    fig.tight_layout()
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
