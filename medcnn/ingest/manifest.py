"""The cohort manifest: one row per image (2D) or series (3D), the contract after ingest.

Columns (tab-separated, in this order, then one column per configured label):

=============  ==============================================================================
subject        pseudonymous subject ID (``sub-`` + keyed hash of PatientID)
study          pseudonymous study ID (``ses-`` + keyed hash of StudyInstanceUID)
series         image/series ID, unique within the subject (``<modality>-<hash>``)
modality       DICOM Modality (CR, DX, CT, MR, ...)
dims           spatial dimensions of the image: 2 or 3
shape          voxels along i, j, k, ``x``-separated (i = columns, j = rows)
spacing        mm along i, j, k, ``x``-separated
photometric    PhotometricInterpretation of the source
view           ViewPosition (PA, AP, LL, ...) or empty
path           the NIfTI image, relative to the results folder
sidecar        its JSON sidecar, relative to the results folder
warnings       ``;``-separated ingest warnings, empty when none
=============  ==============================================================================
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

MANIFEST_COLUMNS = (
    "subject",
    "study",
    "series",
    "modality",
    "dims",
    "shape",
    "spacing",
    "photometric",
    "view",
    "path",
    "sidecar",
    "warnings",
)
QUARANTINE_COLUMNS = ("file", "reason")


def write_manifest(path: Path, rows: list[dict], label_columns: list[str]) -> None:
    """Write the manifest, sorted by subject, study and series."""
    columns = list(MANIFEST_COLUMNS) + [c for c in label_columns if c not in MANIFEST_COLUMNS]
    frame = pd.DataFrame(rows, columns=columns)
    frame = frame.sort_values(["subject", "study", "series"], kind="stable")
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, sep="\t", index=False)


def read_manifest(path: Path) -> pd.DataFrame:
    """Read a manifest; every column as text so IDs are never turned into numbers.

    Raises:
        ValueError: when a required column is missing.
    """
    frame = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    missing = [c for c in MANIFEST_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: manifest lacks columns {missing}")
    return frame


def write_quarantine(path: Path, rows: list[tuple[str, str]]) -> None:
    """Write ``quarantine.tsv`` (file, reason); written even when empty, with its header."""
    frame = pd.DataFrame(rows, columns=list(QUARANTINE_COLUMNS)).sort_values("file")
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, sep="\t", index=False)


def read_quarantine(path: Path) -> pd.DataFrame:
    """Read ``quarantine.tsv``."""
    return pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
