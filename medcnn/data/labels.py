"""Label schemes of a classification task: binary, multi-class and multi-label.

Every scheme is handled as a 0/1 matrix ``(images, labels)``: binary has one label (the
positive value), multi-class one column per class (one-hot; the network ends in a softmax),
multi-label one column per finding (independent sigmoids, as CheXNet's 14 outputs).

In a task's ``index.tsv`` the ``target`` column holds the row of that matrix, ``|``-joined
(``"1"``/``"0"`` for binary, so the binary index reads as before), or is empty when the image
has no label. This module has no torch import: the split and report read it too.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: NIH ChestX-ray14's findings, in the order of Wang et al. 2017 and CheXNet's outputs.
CHESTXRAY14 = (
    "Atelectasis",
    "Cardiomegaly",
    "Effusion",
    "Infiltration",
    "Mass",
    "Nodule",
    "Pneumonia",
    "Pneumothorax",
    "Consolidation",
    "Edema",
    "Emphysema",
    "Fibrosis",
    "Pleural_Thickening",
    "Hernia",
)
NAMED_LABEL_SETS = {"chestxray14": CHESTXRAY14}
KINDS = ("binary", "multiclass", "multilabel")


@dataclass
class LabelScheme:
    """How one manifest column becomes targets.

    Attributes:
        kind: ``binary``, ``multiclass`` or ``multilabel``.
        column: the manifest's label column.
        labels: output names, one per network output (binary: the positive value).
        separator: multi-label only, the character joining findings in one cell.
        negative: multi-label only, the cell value meaning no finding.
        unknown: values (multi-class) or findings (multi-label) met by :meth:`encode` that
            the scheme does not list, with their counts; they are written to ``plans.json``
            so a typo in the config shows.
    """

    kind: str
    column: str
    labels: tuple[str, ...]
    separator: str = "|"
    negative: str = "No Finding"
    unknown: Counter = field(default_factory=Counter)

    @classmethod
    def from_target(cls, target: dict[str, Any]) -> LabelScheme:
        """The scheme of a task's validated ``target`` config.

        Raises:
            ValueError: not exactly one of ``positive``, ``classes``, ``labels``.
        """
        given = [k for k in ("positive", "classes", "labels") if k in target]
        if len(given) != 1:
            raise ValueError(
                f"target of column {target.get('column')!r} needs exactly one of positive, "
                f"classes, labels (got {given or 'none'})"
            )
        column = target["column"]
        if "positive" in target:
            return cls("binary", column, (str(target["positive"]),))
        if "classes" in target:
            return cls("multiclass", column, tuple(str(c) for c in target["classes"]))
        labels = target["labels"]
        labels = NAMED_LABEL_SETS[labels] if isinstance(labels, str) else tuple(labels)
        return cls(
            "multilabel",
            column,
            tuple(labels),
            separator=target.get("separator", "|"),
            negative=target.get("negative", "No Finding"),
        )

    @property
    def n_outputs(self) -> int:
        """Logits the network ends in."""
        return len(self.labels)

    def encode(self, value: Any) -> str:
        """A manifest cell as the index's ``target`` text; ``""`` for no (usable) label.

        >>> LabelScheme.from_target({"column": "f", "labels": ["Mass", "Edema"]}).encode(
        ...     "Edema|Hernia")
        '0|1'
        """
        if value is None or (isinstance(value, float) and np.isnan(value)):
            return ""
        value = str(value).strip()
        if value == "":
            return ""
        if self.kind == "binary":
            return "1" if value == self.labels[0] else "0"
        if self.kind == "multiclass":
            if value not in self.labels:
                self.unknown[value] += 1
                return ""
            return "|".join("1" if value == c else "0" for c in self.labels)
        if value == self.negative:
            return "|".join("0" for _ in self.labels)
        findings = {f.strip() for f in value.split(self.separator) if f.strip()}
        for finding in sorted(findings - set(self.labels)):
            self.unknown[finding] += 1
        return "|".join("1" if label in findings else "0" for label in self.labels)

    def decode(self, texts: list[str]) -> np.ndarray:
        """Index ``target`` texts (non-empty) to the 0/1 matrix, float32 ``(n, labels)``.

        Raises:
            ValueError: a text with the wrong number of entries (an index written for
                another scheme).
        """
        out = np.zeros((len(texts), self.n_outputs), dtype=np.float32)
        for i, text in enumerate(texts):
            parts = str(text).split("|")
            if len(parts) != self.n_outputs:
                raise ValueError(
                    f"target {text!r} has {len(parts)} entries, the {self.kind} scheme of "
                    f"column {self.column!r} has {self.n_outputs} labels (re-run preprocess)"
                )
            out[i] = [float(p) for p in parts]
        return out

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        """Logits ``(n, labels)`` to probabilities: softmax for multi-class, else sigmoid."""
        logits = np.asarray(logits, dtype=np.float64)
        if self.kind == "multiclass":
            shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
            return shifted / shifted.sum(axis=1, keepdims=True)
        return 1.0 / (1.0 + np.exp(-logits))

    def stratum(self, targets: np.ndarray, frequency: np.ndarray | None = None) -> str:
        """One stratum for a patient's images ``(images, labels)``, for stratified splits.

        Binary: ``"1"`` when any image is positive. Otherwise the patient's rarest positive
        label (by ``frequency``, one count per label; a patient with a rare finding is what a
        split must spread over the folds), or ``"none"``.
        """
        positive = np.flatnonzero(np.asarray(targets).max(axis=0) > 0)
        if self.kind == "binary":
            return "1" if len(positive) else "0"
        if not len(positive):
            return "none"
        if frequency is not None:
            positive = positive[np.argsort(np.asarray(frequency)[positive], kind="stable")]
        return self.labels[int(positive[0])]

    def summary(self) -> dict[str, Any]:
        """The scheme as JSON (for ``plans.json`` and bundles)."""
        return {
            "kind": self.kind,
            "column": self.column,
            "labels": list(self.labels),
            "unknown_values": dict(sorted(self.unknown.items())),
        }
