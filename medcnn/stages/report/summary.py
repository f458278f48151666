"""The held-out part of the cohort report made readable: the stored evaluation
(``results/models/{task}/evaluation.json``) without what a figure shows already, the
calibration and subgroup figures the evaluate stage recorded (whatever it computed), and a
task's main metric for the report's first table."""

from __future__ import annotations

from typing import Any

from medcnn.config import SEGMENTATION_KINDS
from medcnn.report.html import readable_number, tidy


def without_bins(stored: dict[str, Any]) -> dict[str, Any]:
    """The stored evaluation without the reliability bins (drawn in the diagram already)."""

    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in ("reliability", "bins")}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    return strip(stored)


#: Keys of a stored classification evaluation that describe calibration.
_CALIBRATION_KEYS = ("ece", "brier", "calibration", "slope", "intercept", "mce", "nll")


def calibration_extra(stored: dict[str, Any] | None) -> dict[str, Any] | None:
    """Calibration figures the evaluate stage recorded per label (ECE, Brier, slope, ...),
    whatever it computed, as a readable table; None when it recorded none."""
    labels = ((stored or {}).get("test") or {}).get("labels")
    if not isinstance(labels, dict):
        return None
    table = {}
    for label, entry in labels.items():
        if not isinstance(entry, dict):
            continue
        picked = {
            k: v
            for k, v in entry.items()
            if any(part in k for part in _CALIBRATION_KEYS) and k != "reliability"
        }
        if picked:
            table[label] = tidy(without_bins(picked))
    return table or None


def stored_subgroups(stored: dict[str, Any] | None) -> dict[str, Any] | None:
    """Per-label subgroup metrics of the stored evaluation, readable; None when absent."""
    labels = ((stored or {}).get("test") or {}).get("labels")
    if not isinstance(labels, dict):
        return None
    table = {
        label: tidy(entry["subgroups"])
        for label, entry in labels.items()
        if isinstance(entry, dict) and entry.get("subgroups")
    }
    return table or None


def glance(task: dict[str, Any]) -> dict[str, str]:
    """A task's main held-out metric as ``{"metric", "value"}`` text for the summary table."""
    test = task.get("test") or {}
    if task["kind"] in SEGMENTATION_KINDS:
        main = "aji" if task["kind"] == "instance_segmentation" else None
        main = main or next((k for k in test if k.endswith("_dice")), None)
        value = test.get(main) if main else None
        if isinstance(value, dict) and "mean" in value:
            low, high = value.get("ci") or (None, None)
            text = f"{readable_number(value['mean'])}"
            if low is not None and high is not None:
                text += f" [{readable_number(low)}, {readable_number(high)}]"
            return {"metric": f"{main.replace('_', ' ')} (mean)", "value": text}
        return {"metric": "Dice", "value": "–"}
    auroc, ci = test.get("auroc"), test.get("auroc_ci") or (float("nan"), float("nan"))
    if auroc is None:
        return {"metric": "AUROC", "value": "–"}
    text = f"{readable_number(auroc)} [{readable_number(ci[0])}, {readable_number(ci[1])}]"
    return {"metric": f"AUROC ({task['label']})", "value": text}
