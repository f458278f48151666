"""The settings the plans tests pass to :func:`medcnn.planning.segmentation.make_seg_plans`.

``make_seg_plans`` takes every setting explicitly (the workflow passes the configured task's);
these are the values the tests' cohorts are planned with unless a test says otherwise: a
semantic task with one foreground class, nothing fixed (spacing, patch, features, batch from
the cohort), a U-Net, a 4 GB budget.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from medcnn.planning.segmentation import make_seg_plans

PLAN_SETTINGS: dict[str, Any] = {
    "kind": "segmentation",
    "modalities": [],
    "classes": ["foreground"],
    "touching_class": False,
    "target_spacing": None,
    "patch_size": None,
    "normalisation": "auto",
    "network": "unet",
    "features": None,
    "batch_size": None,
    "memory_budget_mb": 4000.0,
}


def plan(name: str, cases: Sequence[Mapping[str, Any]], **settings: Any) -> dict[str, Any]:
    """``make_seg_plans`` with :data:`PLAN_SETTINGS`, ``settings`` over them."""
    return make_seg_plans(name, cases, **{**PLAN_SETTINGS, **settings})
