"""The real ``snakemake`` on a tiny cohort, through to the reports."""

from __future__ import annotations

import base64
import gzip
import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from medcnn.config import validate_config
from medcnn.io.deid import pseudonym
from tests.conftest import MARK, REPO, make_tiny_workflow, run_from_repo, run_snakemake
from tests.ingest.test_pipeline import snapshot


def readable_bytes(path: Path) -> bytes:
    """A file's bytes, decompressed when gzip (NIfTI headers and extensions included)."""
    blob = path.read_bytes()
    return gzip.decompress(blob) if blob[:2] == b"\x1f\x8b" else blob


def test_every_subject_gets_a_report_with_prediction_and_images(workflow_run):
    work, _, images, _, _ = workflow_run
    results = work / "results"
    manifest = (results / "ingest" / "manifest.tsv").read_text().splitlines()
    subjects = sorted({line.split("\t")[0] for line in manifest[1:]})
    assert len(subjects) == len({i.patient_id for i in images}) == 8
    for subject in subjects:
        html = (results / "reports" / f"{subject}.html").read_text()
        prediction = json.loads((results / "predict" / "cxr" / f"{subject}.json").read_text())
        assert prediction["images"], subject
        for image in prediction["images"]:
            assert f"{image['probability']:.3f}" in html
            assert image["series"] in html
        # a thumbnail plus Grad-CAM, Grad-CAM++ and occlusion overlays per image, embedded,
        # each map with its faithfulness score; nothing fetched from elsewhere
        saliency = json.loads(
            (results / "saliency" / "cxr" / subject / "saliency.json").read_text()
        )
        assert len(saliency["maps"]) == 3 * len(prediction["images"])
        assert html.count("data:image/png;base64,") == 4 * len(prediction["images"])
        assert html.count('class="score"') == len(saliency["maps"])
        for m in saliency["maps"]:
            assert f"{m['faithfulness']['score']:.3f}" in html
        assert (results / "reports" / f"{subject}.pdf").read_bytes()[:5] == b"%PDF-"
        assert not re.search(r'(src|href)="(?!data:|#|sub-)', html)
        assert prediction["model"]["weights_sha256"][0] in html
        assert subject in html
    cohort = (results / "reports" / "cohort.html").read_text()
    metrics = json.loads((results / "reports" / "cohort.json").read_text())
    assert metrics["summary"]["subjects"] == 8
    assert metrics["quarantined"] == 3
    assert 'id="auroc-cxr"' in cohort
    for subject in subjects:
        assert f'href="{subject}.html"' in cohort
    assert (results / "reports" / "figures" / "cxr_reliability.png").exists()


def test_no_identifier_reaches_results_or_logs(workflow_run):
    work, _, images, _, _ = workflow_run
    needles = set()
    for image in images:
        family = image.patient_name.split("^")[0]
        needles |= {image.patient_id, image.accession_number, family, image.birth_date}
    needles = {n.encode() for n in needles if n}
    assert all(MARK.encode() in n or n.isdigit() for n in needles)
    checked = 0
    for folder in (work / "results", work / "logs"):
        for path in folder.rglob("*"):
            if path.is_file():
                blob = readable_bytes(path)
                found = [n for n in needles if n in blob]
                assert not found, f"{path} holds identifiers {found}"
                checked += 1
    assert checked > 50


def test_inputs_untouched_and_broken_files_quarantined(workflow_run):
    work, scans, _, before, _ = workflow_run
    assert snapshot(scans) == before
    quarantine = (work / "results" / "ingest" / "quarantine.tsv").read_text()
    # notes.dcm is not a plain scan-file name: shown as a keyed pseudonym (ingest.show_paths)
    assert "notes.dcm" not in quarantine and re.search(r"/f-[0-9a-f]{10}\.dcm\t", quarantine)
    assert "no pixel data" in quarantine
    assert len(quarantine.strip().splitlines()) == 4  # header + 3 broken files


def test_the_users_config_is_the_whole_config(workflow_run):
    """Run from the repository root, the user's --configfile alone is the config: none of the
    demo's tasks or inputs is merged in, and every step read the file Snakemake was given."""
    work, _, _, _, configfile = workflow_run
    results = work / "results"
    log = (work / "snakemake.log").read_text()
    assert sorted(p.name for p in (results / "models").iterdir()) == ["cxr"]
    assert sorted(p.name for p in (results / "preprocess").iterdir()) == ["cxr"]
    assert sorted(p.name for p in (results / "splits").iterdir()) == ["cxr.json"]
    assert "generate_demo" not in log, "the demo's rules must not run"
    assert "demo/" not in (work / "logs" / "ingest" / "ingest_scans.log").read_text()
    # every medcnn step was called with the user's file and no other (Snakemake keeps each
    # job's shell command in .snakemake/metadata, keyed by the output's path)
    meta = REPO / ".snakemake" / "metadata"
    commands = []
    for entry in meta.iterdir():
        if base64.b64decode(entry.name.replace("@", "/")).decode().startswith(str(work)):
            commands.append(json.loads(entry.read_text())["shellcmd"])
    given = {m for c in commands for m in re.findall(r"medcnn \S+ --config (\S+)", c)}
    assert len(commands) > 5 and given == {str(configfile.resolve())}, given
    # and the model was trained with the user's task exactly as validated from that file
    expected = validate_config(yaml.safe_load(configfile.read_text()))["tasks"]["cxr"]
    trained = json.loads((results / "models" / "cxr" / "fold0" / "config.json").read_text())
    assert trained == json.loads(json.dumps(expected))


def test_two_configfiles_are_refused(workflow_run, tmp_path):
    _, _, _, _, configfile = workflow_run
    other = tmp_path / "other.yaml"
    shutil.copy(configfile, other)
    result = run_from_repo(configfile, str(other), "-n")  # --configfile A B
    assert result.returncode != 0
    assert "medcnn takes one --configfile" in result.stdout + result.stderr


def test_rerun_has_nothing_to_do(workflow_run):
    work, _, _, _, configfile = workflow_run
    result = run_from_repo(configfile, "-n")
    assert result.returncode == 0
    assert "Nothing to be done" in result.stdout + result.stderr


def test_predict_only_with_the_bundle_gives_the_same_answers(workflow_run, tmp_path):
    """Train (the module's run), then predict held-out patients from a fresh folder with the
    exported bundle: same probabilities, reports made; a new patient re-runs only itself."""
    work, _, images, _, _ = workflow_run
    results = work / "results"
    held_out = set(json.loads((results / "splits" / "cxr.json").read_text())["test"])
    secret = b"workflow-test"
    by_subject: dict[str, list] = {}
    for image in images:
        by_subject.setdefault(pseudonym(image.patient_id, secret, "sub-"), []).append(image)
    new = tmp_path / "new" / "dicom"
    new.mkdir(parents=True)
    for subject in held_out:
        for image in by_subject[subject]:
            shutil.copy(image.path, new / f"{image.sop_uid}.dcm")
    configfile = tmp_path / "predict.yaml"
    configfile.write_text(
        yaml.safe_dump(
            {
                "inputs": ["new/dicom"],
                "deid": {"secret": "workflow-test"},
                "batches": {"min_batches": 1},
                "bundles": {"cxr": {"path": str(results / "models" / "cxr")}},
            }
        )
    )
    result = run_snakemake(tmp_path, configfile)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert not (tmp_path / "results" / "models").exists(), "predict-only must not train"
    for subject in held_out:
        trained = json.loads((results / "predict" / "cxr" / f"{subject}.json").read_text())
        again = json.loads(
            (tmp_path / "results" / "predict" / "cxr" / f"{subject}.json").read_text()
        )
        assert again["role"] == "new"
        assert [i["series"] for i in again["images"]] == [i["series"] for i in trained["images"]]
        for a, b in zip(again["images"], trained["images"], strict=True):
            assert a["probability"] == pytest.approx(b["probability"], abs=1e-6)
            assert a["quality_flags"] == []
        html = (tmp_path / "results" / "reports" / f"{subject}.html").read_text()
        assert f"{again['images'][0]['probability']:.3f}" in html
    assert (tmp_path / "results" / "reports" / "cohort.html").exists()

    # A new patient arrives (two folders down): only that patient's jobs run again.
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "results" / "predict").rglob("*.json")}
    newcomer = sorted(set(by_subject) - held_out)[0]
    (new / "later" / "batch2").mkdir(parents=True)
    for image in by_subject[newcomer]:
        shutil.copy(image.path, new / "later" / "batch2" / f"{image.sop_uid}.dcm")
    result = run_snakemake(tmp_path, configfile)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    after = {p: p.stat().st_mtime_ns for p in (tmp_path / "results" / "predict").rglob("*.json")}
    assert {p for p in after if p not in before} == {
        tmp_path / "results" / "predict" / "cxr" / f"{newcomer}.json"
    }
    assert all(after[p] == before[p] for p in before), "an old subject was predicted again"
    assert (tmp_path / "results" / "reports" / f"{newcomer}.html").exists()


def test_a_tampered_bundle_is_refused(workflow_run, tmp_path):
    from medcnn.models.bundle import BundleError, load_bundle

    work = workflow_run[0]
    bundle = tmp_path / "fold0"
    shutil.copytree(work / "results" / "models" / "cxr" / "fold0", bundle)
    weights = bundle / "model.pt"
    blob = bytearray(weights.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    weights.write_bytes(bytes(blob))
    with pytest.raises(BundleError, match="does not match"):
        load_bundle(bundle)


def test_a_fold_ensemble_predicts_with_one_calibration_for_its_folds(tmp_path):
    """``split.folds: 2`` (the README's NIH config uses 4) through the real workflow: one
    bundle per fold, and each held-out image's probability is the mean of both folds'
    probabilities after one Platt calibration fitted on both folds' validation logits."""
    import numpy as np
    import torch

    from medcnn.data.index import read_index
    from medcnn.metrics.calibration import apply_calibration, fit_calibration
    from medcnn.models.bundle import load_bundle

    _, _, configfile = make_tiny_workflow(tmp_path)
    config = yaml.safe_load(configfile.read_text())
    config["tasks"]["cxr"]["split"] = {"test_fraction": 0.3, "folds": 2, "seed": 0}
    config["batches"] = {"min_batches": 1}
    configfile.write_text(yaml.safe_dump(config))
    # up to the task's evaluation (saliency and reports are the other workflow tests')
    result = run_snakemake(tmp_path, configfile, "results/models/cxr/evaluation.json")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    results = tmp_path / "results"
    split = json.loads((results / "splits" / "cxr.json").read_text())
    assert len(split["folds"]) == 2
    val = [set(f["val"]) for f in split["folds"]]
    validated = val[0] | val[1]
    assert not val[0] & val[1] and not validated & set(split["test"])
    bundles = [load_bundle(results / "models" / "cxr" / f"fold{k}") for k in range(2)]
    logits = np.concatenate([np.asarray(b["validation"]["logits"]) for _, b in bundles])
    targets = np.concatenate([np.asarray(b["validation"]["targets"]) for _, b in bundles])
    rows = read_index(results / "preprocess" / "cxr" / "index.tsv").to_dict("records")
    assert len(logits) == sum(1 for r in rows if r["subject"] in validated and r["target"] != "")
    common = fit_calibration(logits, targets, "binary", "platt")
    arrays = {r["series"]: results / "preprocess" / "cxr" / r["array"] for r in rows}
    checked = 0
    for subject in split["test"]:
        prediction = json.loads((results / "predict" / "cxr" / f"{subject}.json").read_text())
        assert len(prediction["model"]["weights_sha256"]) == 2
        for image in prediction["images"]:
            x = torch.as_tensor(np.load(arrays[image["series"]])[None], dtype=torch.float32)
            probs = []
            for model, _ in bundles:
                with torch.no_grad():
                    z = model(x).double().numpy()
                probs.append(1 / (1 + np.exp(-apply_calibration(z, common)[0, 0])))
            assert image["probability"] == pytest.approx(np.mean(probs), abs=1e-4)
            checked += 1
    assert checked >= 2
    evaluation = json.loads((results / "models" / "cxr" / "evaluation.json").read_text())
    assert evaluation["split"]["folds"] == 2
