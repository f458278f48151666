"""The dcm2niix reference check on real DICOM (``../shared/data/dicom_qa``): 100% per suite.

Every suite (``dcm_qa_nih``: GE and Siemens mosaic; ``dcm_qa_philips``: classic Philips with
precise scaling and a 2,040-file DWI with an empty PatientID; ``dcm_qa_ts``: nine transfer
syntaxes under nine SeriesNumbers of one SeriesInstanceUID; ``dcm_qa_enh``: enhanced
multi-frame) is converted through ``run_ingest`` with default settings and compared with the
files dcm2niix wrote into ``Ref/`` by :mod:`bench.dicom_reference` (the same code the
benchmark table comes from): voxels, world geometry after ``nibabel.as_closest_canonical``,
bval/bvec and key sidecar fields, one row per reference entry.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
QA = REPO.parent / "shared" / "data" / "dicom_qa"

pytestmark = [
    pytest.mark.realdata,
    pytest.mark.skipif(
        not (QA / "dcm_qa_nih" / "In").is_dir(),
        reason=f"real data absent: {QA} (the dcm2niix QA sets live in ../shared/data)",
    ),
]


def _reference_module():
    spec = importlib.util.spec_from_file_location(
        "dicom_reference", REPO / "bench" / "dicom_reference.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


reference = _reference_module()


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """Each present suite converted once: {suite: outputs}."""
    out = {}
    for suite in reference.SUITES:
        if (QA / suite / "In").is_dir():
            out[suite] = reference.convert_suite(QA / suite, tmp_path_factory.mktemp(suite))
    return out


@pytest.mark.parametrize("suite", reference.SUITES)
def test_every_reference_matches(converted, suite):
    if suite not in converted:
        pytest.skip(
            f"real data absent: {QA / suite} (the dcm2niix QA suites live in ../shared/data)"
        )
    rows = reference.check_suite(QA / suite, converted[suite])
    counted = [r for r in rows if r.counted]
    assert counted, f"{suite}: no reference entry with its input present"
    failed = [f"{r.reference}: {'; '.join(r.detail)}" for r in counted if not r.ok]
    assert not failed, f"{suite}: {len(failed)}/{len(counted)} differ: {failed}"


def test_empty_patient_id_series_is_converted(converted):
    if "dcm_qa_philips" not in converted:
        pytest.skip(f"real data absent: {QA / 'dcm_qa_philips'} (../shared/data)")
    dwi = [o for o in converted["dcm_qa_philips"] if o.sidecar.get("SeriesNumber") == 1201]
    assert dwi and all(o.sidecar["SubjectSource"] == "StudyInstanceUID" for o in dwi)


#: The PyPI dcm2niix (the dev extra) puts its binary next to this interpreter.
DCM2NIIX = shutil.which("dcm2niix") or shutil.which(
    "dcm2niix", path=str(Path(sys.executable).parent)
)


@pytest.mark.skipif(DCM2NIIX is None, reason="dcm2niix (pip dcm2niix) absent")
def test_same_as_dcm2niix_run_here_on_the_transfer_syntax_suite(converted, tmp_path):
    """The PyPI dcm2niix as a second oracle: run now, it must agree with our conversion."""
    if "dcm_qa_ts" not in converted:
        pytest.skip(f"real data absent: {QA / 'dcm_qa_ts'} (../shared/data)")
    subprocess.run(
        [
            str(DCM2NIIX),
            "-b",
            "n",
            "-z",
            "n",
            "-f",
            "%s",
            "-o",
            str(tmp_path),
            str(QA / "dcm_qa_ts" / "In"),
        ],
        check=True,
        capture_output=True,
    )
    made = sorted(tmp_path.glob("*.nii"))
    assert made
    ours = converted["dcm_qa_ts"]
    for path in made:
        theirs = nib.as_closest_canonical(nib.load(path))
        number = int(path.name.split(".")[0].split("_")[0])
        (mine,) = [o for o in ours if o.sidecar.get("SeriesNumber") == number]
        np.testing.assert_array_equal(
            np.asarray(mine.canonical.dataobj), np.asarray(theirs.dataobj)
        )
        assert np.abs(mine.canonical.affine - theirs.affine).max() < 1e-3
