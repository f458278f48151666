"""The dcm2niix reference check on real GE and Siemens MR (``../shared/data/dicom_qa``).

Every series of ``dcm_qa_nih/In`` must give the same voxels in the same world space as the
NIfTI that dcm2niix wrote into ``Ref/``: compared after ``nibabel.as_closest_canonical``
(which undoes dcm2niix's row flip), voxels exactly and the affine within 1e-3 mm.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medcnn.config import validate_config
from medcnn.ingest.manifest import read_manifest, read_quarantine
from medcnn.ingest.pipeline import run_ingest

QA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "dicom_qa" / "dcm_qa_nih"

pytestmark = [
    pytest.mark.realdata,
    pytest.mark.skipif(
        not (QA / "In").is_dir(),
        reason=f"real data absent: {QA} (the dcm2niix QA set lives in ../shared/data)",
    ),
]


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    results = tmp_path_factory.mktemp("realdata")
    config = validate_config(
        {
            "results": str(results),
            "inputs": [str(QA / "In")],
            "deid": {"secret": "realdata-test"},
            "tasks": {"t": {"kind": "classification", "target": {"column": "f", "positive": "p"}}},
        }
    )
    run_ingest(config)
    return results


def test_every_series_matches_the_dcm2niix_reference(converted):
    manifest = read_manifest(converted / "ingest" / "manifest.tsv")
    assert read_quarantine(converted / "ingest" / "quarantine.tsv").empty
    ours = [nib.as_closest_canonical(nib.load(converted / p)) for p in manifest["path"]]
    references = sorted((QA / "Ref").glob("*.nii"))
    assert len(ours) == len(references) == 8
    for ref_path in references:
        ref = nib.as_closest_canonical(nib.load(ref_path))
        expected = np.asarray(ref.dataobj)
        matches = [
            img
            for img in ours
            if img.shape == ref.shape
            and np.array_equal(np.asarray(img.dataobj), expected)
            and np.abs(img.affine - ref.affine).max() < 1e-3
        ]
        assert len(matches) == 1, f"no converted series matches {ref_path.name}"
