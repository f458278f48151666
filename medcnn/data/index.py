"""A task's ``index.tsv``: one row per preprocessed image (kept free of torch/MONAI imports).

Columns: ``subject``, ``study``, ``series``, ``array`` (the ``.npy`` path relative to the
task's preprocess folder) and ``target`` (``1``, ``0``, or empty when unlabelled).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

INDEX_COLUMNS = ("subject", "study", "series", "array", "target")


def read_index(path: Path) -> pd.DataFrame:
    """Read a task's ``index.tsv`` (all columns as text)."""
    return pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)


def write_index(path: Path, rows: list[dict[str, str]]) -> None:
    """Write a task's ``index.tsv``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=list(INDEX_COLUMNS)).to_csv(path, sep="\t", index=False)
