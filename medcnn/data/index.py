"""A task's ``index.tsv``: one row per preprocessed image (kept free of torch/MONAI imports).

Columns: ``subject``, ``study``, ``series``, ``array`` (the ``.npy`` path relative to the
task's preprocess folder) and ``target`` (the image's 0/1 label vector ``|``-joined, see
:mod:`medcnn.data.labels`: ``1``/``0`` for a binary task; empty when unlabelled), then the
task's subgroup columns (``view``, ``sex``, ...) copied from the manifest.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

INDEX_COLUMNS = ("subject", "study", "series", "array", "target")


def read_index(path: Path) -> pd.DataFrame:
    """Read a task's ``index.tsv`` (all columns as text)."""
    return pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)


def write_index(path: Path, rows: list[dict[str, str]], extra_columns: Sequence[str] = ()) -> None:
    """Write a task's ``index.tsv``: the fixed columns, then ``extra_columns``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = list(INDEX_COLUMNS) + [c for c in extra_columns if c not in INDEX_COLUMNS]
    pd.DataFrame(rows, columns=columns).to_csv(path, sep="\t", index=False)
