"""``medcnn ingest`` starts light: the ingest path imports no module it does not need.

Every ingest run pays for its imports (a 9-file folder converts in a fraction of the time
Python takes to import pandas, torch or scipy), so these stay out of the ingest path;
``bench/ingest_vs_dcm2niix.py`` prints what the imports that remain cost.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

#: Modules the ingest path must not import when it starts (nibabel: only where an image is
#: written, so a re-run over unchanged scans never imports it).
HEAVY = (
    "pandas",
    "torch",
    "monai",
    "scipy",
    "skimage",
    "matplotlib",
    "snakemake",
    "requests",
    "nibabel",
)


def test_the_ingest_path_imports_nothing_heavy():
    code = (
        f"import sys, json; sys.path.insert(0, {str(REPO)!r}); "
        "import medcnn.cli, medcnn.config, medcnn.stages.ingest, medcnn.ingest.pipeline; "
        f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_requests_still_imports_after_pydicom():
    """pydicom is imported without requests; requests itself is not broken by that."""
    code = (
        f"import sys; sys.path.insert(0, {str(REPO)!r}); import medcnn.ingest.pipeline; "
        "import importlib.util; print(importlib.util.find_spec('requests') is None "
        "or bool(__import__('requests')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert out.stdout.strip().splitlines()[-1] == "True"
