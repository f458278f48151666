"""End to end: a mixed folder of MR series, enhanced multi-frame, PNG tiles and NIfTI."""

from __future__ import annotations

import gzip
import json
import re
import stat
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.uid import generate_uid

from medcnn.config import validate_config
from medcnn.ingest.manifest import read_manifest, read_quarantine, validate_manifest
from medcnn.ingest.pipeline import run_ingest
from medcnn.io.deid import pseudonym
from tests.io.synthetic import (
    ACCESSION,
    BIRTH_DATE,
    PATIENT_ID,
    PATIENT_NAME,
    SC_STORAGE,
    STUDY_DATE,
    base_dataset,
    random_volume,
    slice_ipps,
    write_enhanced,
    write_series,
)

SECRET = "mixed-test-secret"
IDENTIFIERS = [
    PATIENT_ID,
    PATIENT_NAME,
    PATIENT_NAME.replace("^", " "),
    ACCESSION,
    BIRTH_DATE,
    STUDY_DATE,
    "ZQXJ",
]


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("mixed")
    dicom = root / "export"
    study = generate_uid()
    series = generate_uid()
    # Two echoes of 4 axial slices plus a localizer, all in one SeriesInstanceUID.
    for echo in (1, 2):
        write_series(
            dicom / "s1",
            random_volume((4, 6, 5), seed=echo),
            slice_ipps(4, spacing=2.0),
            study_uid=study,
            series_uid=series,
            instance_order=[(echo - 1) * 4 + k + 1 for k in range(4)],
            EchoNumbers=echo,
            name=f"E{echo}_",
        )
    write_series(
        dicom / "s1",
        random_volume((1, 6, 5), seed=9),
        [np.zeros(3)],
        iop=(0.0, 1.0, 0.0, 0.0, 0.0, -1.0),
        study_uid=study,
        series_uid=series,
        instance_order=[20],
        ImageType=["ORIGINAL", "PRIMARY", "LOCALIZER"],
        name="LOC",
    )
    # A series with slice 2 of 5 missing.
    ipps = slice_ipps(5, spacing=3.0)
    write_series(
        dicom / "s2", random_volume((4, 4, 4), 3), [ipps[k] for k in (0, 1, 3, 4)], study_uid=study
    )
    write_enhanced(dicom / "enh.dcm", random_volume((3, 4, 4), 4), slice_ipps(3))
    # A screenshot with burned-in text.
    ds = base_dataset(SC_STORAGE, modality="OT", BurnedInAnnotation="YES")
    ds.set_pixel_data(np.zeros((4, 4, 3), np.uint8), "RGB", 8)
    ds.save_as(dicom / "burned.dcm", enforce_file_format=True)
    (dicom / "README.txt").write_text("export notes\n")

    images = root / "images"
    (images / "patZQXJ01" / "visit1").mkdir(parents=True)
    tile = np.random.default_rng(0).integers(0, 256, (5, 7, 3)).astype(np.uint8)
    Image.fromarray(tile).save(images / "patZQXJ01" / "visit1" / "tile.png")
    nifti = nib.Nifti1Image(np.arange(24, dtype=np.int16).reshape(2, 3, 4), np.diag([2, 2, 2, 1]))
    nifti.header["descrip"] = PATIENT_NAME.encode()  # a header that names the patient
    nib.save(nifti, images / "patZQXJ01" / "visit1" / "t1.nii.gz")
    Image.fromarray(tile).save(images / "stray.png")  # does not match the pattern
    return root


def config_for(root: Path, results: Path, **deid) -> dict:
    return validate_config(
        {
            "results": str(results),
            "inputs": [
                str(root / "export"),
                {
                    "path": str(root / "images"),
                    "pattern": r"^(?P<subject>pat[^/]+)/(?P<study>[^/]+)/",
                    "modality": "SM",
                },
            ],
            "deid": {"secret": SECRET, **deid},
            "ingest": {"burned_in": "quarantine"},
            "tasks": {
                "cxr": {"kind": "classification", "target": {"column": "f", "positive": "p"}}
            },
        }
    )


@pytest.fixture(scope="module")
def ingested(mixed, tmp_path_factory):
    results = tmp_path_factory.mktemp("results")
    mapping = tmp_path_factory.mktemp("private") / "mapping.tsv"
    run_ingest(config_for(mixed, results, mapping=str(mapping)))
    return results, mapping


def test_manifest_rows_and_splits(ingested):
    results, _ = ingested
    manifest = read_manifest(results / "ingest" / "manifest.tsv")
    assert validate_manifest(manifest) == []
    subject = pseudonym(PATIENT_ID, SECRET.encode(), "sub-")
    dicom = manifest[manifest["source"] == "dicom"]
    assert set(dicom["subject"]) == {subject}
    # Series 1 -> echo 1, echo 2, localizer; series 2 -> one resampled volume; enhanced -> one.
    assert len(dicom) == 5
    split = [json.loads((results / p).read_text()) for p in dicom["sidecar"]]
    split = [s for s in split if "SeriesSplit" in s]
    assert len(split) == 3
    assert {json.dumps(s["SeriesSplit"]["by"], sort_keys=True) for s in split} == {
        '{"echo": "1", "localizer": "image"}',
        '{"echo": "2", "localizer": "image"}',
        '{"localizer": "localizer"}',
    }
    resampled = [s for s in map(json.loads, _texts(results, dicom)) if s.get("MissingSlices")]
    assert len(resampled) == 1 and resampled[0]["Resampled"] is True
    row = dicom[dicom["sidecar"].str.endswith(Path(resampled[0]["Series"] + ".json").name)]
    assert row["shape"].item() == "4x4x5" and "missing slice" in row["warnings"].item()


def _texts(results: Path, rows) -> list[str]:
    return [(results / p).read_text() for p in rows["sidecar"]]


def test_non_dicom_inputs_take_subject_and_study_from_the_pattern(ingested, mixed):
    results, _ = ingested
    manifest = read_manifest(results / "ingest" / "manifest.tsv")
    others = manifest[manifest["source"] != "dicom"].set_index("source")
    subject = pseudonym("patZQXJ01", SECRET.encode(), "sub-")
    assert set(others["subject"]) == {subject}
    assert set(others["modality"]) == {"SM"}
    png = others.loc["image"]
    assert png["channels"] == "3" and png["shape"] == "7x5x1" and png["dims"] == "2"
    tile = np.asarray(Image.open(mixed / "images" / "patZQXJ01" / "visit1" / "tile.png"))
    data = np.asarray(nib.load(results / png["path"]).dataobj)
    assert data.shape == (7, 5, 1, 1, 3)
    np.testing.assert_array_equal(data[:, :, 0, 0], tile.transpose(1, 0, 2))
    nifti = nib.load(results / others.loc["nifti"]["path"])
    np.testing.assert_array_equal(np.asarray(nifti.dataobj), np.arange(24).reshape(2, 3, 4))
    np.testing.assert_allclose(nifti.affine, np.diag([2, 2, 2, 1]))


def test_quarantine_has_reasons(ingested):
    results, _ = ingested
    quarantine = read_quarantine(results / "ingest" / "quarantine.tsv")
    reasons = dict(zip(quarantine["file"], quarantine["reason"], strict=True))
    # File names that are not plain scan names are shown as keyed pseudonyms.
    (burned,) = [f for f, r in reasons.items() if "BurnedInAnnotation YES" in r]
    (stray,) = [f for f, r in reasons.items() if "does not match the input pattern" in r]
    assert re.fullmatch(r"export/f-[0-9a-f]{10}\.dcm", burned)
    assert re.fullmatch(r"images/f-[0-9a-f]{10}\.png", stray)
    assert not any("README" in f for f in reasons)


def test_no_identifier_in_any_output(ingested):
    results, _ = ingested
    checked = 0
    for path in results.rglob("*"):
        if not path.is_file():
            continue
        blob = path.read_bytes()
        if path.name.endswith(".gz"):
            blob = gzip.decompress(blob)  # NIfTI header, extensions and voxels
        for identifier in IDENTIFIERS:
            assert identifier.encode() not in blob, f"{identifier} in {path}"
        checked += 1
    assert checked >= 2 * 7 + 2


def test_mapping_is_private_and_maps_back(ingested):
    _, mapping = ingested
    assert stat.S_IMODE(mapping.stat().st_mode) == 0o600
    rows = [line.split("\t") for line in mapping.read_text().splitlines()[1:]]
    originals = {pseudo: original for pseudo, _, original in rows}
    assert originals[pseudonym(PATIENT_ID, SECRET.encode(), "sub-")] == PATIENT_ID


def test_dates_shifted_per_subject_and_stable(mixed, tmp_path):
    first = tmp_path / "a"
    run_ingest(config_for(mixed, first, dates="shift"))
    sidecars = [json.loads(p.read_text()) for p in first.rglob("sub-*/*.json")]
    dates = {s["StudyDate"] for s in sidecars if "StudyDate" in s}
    assert len(dates) == 1 and dates != {"2019-06-07"}
    second = tmp_path / "b"
    run_ingest(config_for(mixed, second, dates="shift"))
    again = {json.loads(p.read_text()).get("StudyDate") for p in second.rglob("sub-*/*.json")}
    assert dates <= again


def test_rerun_rewrites_nothing(mixed, tmp_path):
    config = config_for(mixed, tmp_path)
    run_ingest(config)
    outputs = sorted(tmp_path.rglob("sub-*/*"))
    before = [p.stat().st_mtime_ns for p in outputs]
    run_ingest(config)
    assert [p.stat().st_mtime_ns for p in outputs] == before


def test_reject_policy_quarantines_every_file_of_the_series(mixed, tmp_path):
    config = config_for(mixed, tmp_path)
    config["ingest"]["uneven_spacing"] = "reject"
    run_ingest(config)
    quarantine = read_quarantine(tmp_path / "ingest" / "quarantine.tsv")
    rejected = quarantine[quarantine["reason"].str.contains("missing slice")]
    assert sorted(rejected["file"]) == [f"export/s2/IM{k:04d}.dcm" for k in range(1, 5)]


def test_enhanced_file_geometry_in_output(ingested, mixed):
    results, _ = ingested
    manifest = read_manifest(results / "ingest" / "manifest.tsv")
    sidecars = {p: json.loads((results / p).read_text()) for p in manifest["sidecar"]}
    enhanced = [p for p, s in sidecars.items() if s.get("EnhancedMultiFrame")]
    assert len(enhanced) == 1
    row = manifest[manifest["sidecar"] == enhanced[0]].iloc[0]
    img = nib.load(results / row["path"])
    source = pydicom.dcmread(mixed / "export" / "enh.dcm")
    np.testing.assert_array_equal(np.asarray(img.dataobj), source.pixel_array.transpose(2, 1, 0))
    assert img.header.get_qform(coded=True)[1] == 1 and img.header.get_sform(coded=True)[1] == 1
