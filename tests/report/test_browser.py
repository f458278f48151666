"""The reports opened in a real browser: headless Chromium (Debian's, driven by Selenium),
from the files the workflow tests wrote (one run a session, shared with them).

Each page must load every image, make no network request, log no console error, show its
key figures as text and, for a lesion patient, start its slice viewer; full-page
screenshots go to ``results/screenshots/`` of the run. The PDF's pages are rendered with
``pdftoppm`` and must not be blank.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.report import chromium

WHY_NOT = chromium.missing()


@pytest.fixture(scope="module")
def browser():
    if WHY_NOT:
        pytest.skip(f"no headless Chromium: {WHY_NOT}")
    driver = chromium.start()
    yield driver
    driver.quit()


def _subject_with_images(results: Path, task: str) -> tuple[str, dict]:
    """A subject of ``task`` with predicted images, preferring one with reference scores."""
    found = []
    for path in sorted((results / "predict" / task).glob("sub-*.json")):
        prediction = json.loads(path.read_text())
        if prediction["images"]:
            scored = any(i.get("metrics") for i in prediction["images"])
            found.append((not scored, path.stem, prediction))
    assert found, f"no subject with {task} images"
    _, subject, prediction = min(found, key=lambda f: (f[0], f[1]))
    return subject, prediction


def _not_blank(png: Path) -> float:
    """The share of pixels that differ from the page's most common colour."""
    pixels = np.asarray(Image.open(png).convert("L"))
    values, counts = np.unique(pixels, return_counts=True)
    return float(1.0 - counts.max() / pixels.size)


def _check(browser, page: Path, shots: Path, name: str) -> chromium.PageCheck:
    check = chromium.open_page(browser, page)
    assert check.images, f"{page.name}: no image"
    assert not check.broken_images, f"{page.name}: images not loaded: {check.broken_images}"
    assert not check.remote_requests, f"{page.name}: network requests {check.remote_requests}"
    assert not check.console_errors, f"{page.name}: console errors {check.console_errors}"
    shot = chromium.full_page_png(browser, shots / f"{name}.png")
    assert _not_blank(shot) > 0.05, f"{shot} looks blank"
    return check


def test_reports_render_in_headless_chromium(workflow_run, seg_run, browser):
    cxr_results, seg_results = workflow_run[0] / "results", seg_run[0] / "results"

    # a radiograph patient: the probability of each image, the maps' faithfulness scores
    subject, prediction = _subject_with_images(cxr_results, "cxr")
    shots = cxr_results / "screenshots"
    check = _check(browser, cxr_results / "reports" / f"{subject}.html", shots, "cxr-subject")
    assert subject in check.text
    for image in prediction["images"]:
        assert f"{image['probability']:.3f}" in check.text
    saliency = json.loads(
        (cxr_results / "saliency" / "cxr" / subject / "saliency.json").read_text()
    )
    for m in saliency["maps"]:
        assert f"{m['faithfulness']['score']:.3f}" in check.text
    # (1 thumbnail + 3 maps per image)
    assert len(check.images) == 4 * len(prediction["images"])

    cohort = json.loads((cxr_results / "reports" / "cohort.json").read_text())
    check = _check(browser, cxr_results / "reports" / "cohort.html", shots, "cxr-cohort")
    test = cohort["tasks"]["cxr"]["test"]
    assert f"{test['auroc']:.3f}" in check.text and f"{test['sensitivity']:.3f}" in check.text
    assert "{'" not in check.text and "[{" not in check.text, "a Python repr in the report"

    # a lesion patient: volumes, Dice against the reference, and a working slice viewer
    shots = seg_results / "screenshots"
    subject, prediction = _subject_with_images(seg_results, "lesion")
    check = _check(browser, seg_results / "reports" / f"{subject}.html", shots, "lesion-subject")
    # one slice viewer per 3D image of every segmentation task in the patient's report (the
    # fixture has the 3D lesion task and its 2D-on-volume twin, lesion_slices)
    volumes = sum(
        len(json.loads(path.read_text())["images"])
        for task in ("lesion", "lesion_slices")
        for path in [seg_results / "predict" / task / f"{subject}.json"]
        if path.is_file()
    )
    assert volumes >= len(prediction["images"])
    assert check.viewers == ["ready"] * volumes, check.viewers
    for image in prediction["images"]:
        for ml in image["volume_ml"].values():
            assert f"{ml:.3f}" in check.text
        for scores in (image.get("metrics") or {}).values():
            assert f"{scores['dice']:.3f}" in check.text

    # a nuclei image: the count, and the scores when it has a reference
    subject, prediction = _subject_with_images(seg_results, "nuclei")
    check = _check(browser, seg_results / "reports" / f"{subject}.html", shots, "nuclei-subject")
    for image in prediction["images"]:
        assert str(image["n_instances"]) in check.text
        if image.get("metrics"):
            assert f"{image['metrics']['aji']:.3f}" in check.text

    # the segmentation cohort: held-out Dice and AJI, a gallery linking to patient reports
    check = _check(browser, seg_results / "reports" / "cohort.html", shots, "seg-cohort")
    evaluation = json.loads((seg_results / "models" / "lesion" / "evaluation.json").read_text())
    assert f"{evaluation['test']['lesion_dice']['mean']:.3f}" in check.text
    evaluation = json.loads((seg_results / "models" / "nuclei" / "evaluation.json").read_text())
    assert f"{evaluation['test']['aji']['mean']:.3f}" in check.text
    links = browser.execute_script(
        "return [...document.querySelectorAll('div.gallery a')].map(a => a.getAttribute('href'))"
    )
    assert links and all((seg_results / "reports" / h.split("#")[0]).exists() for h in links)
    assert "{'" not in check.text and "[{" not in check.text, "a Python repr in the report"


@pytest.mark.skipif(
    not shutil.which("pdftoppm"), reason="no pdftoppm (apt-get install poppler-utils)"
)
def test_pdf_pages_are_not_blank(workflow_run, seg_run, tmp_path):
    for results, task in ((workflow_run[0] / "results", "cxr"), (seg_run[0] / "results", "lesion")):
        subject, _ = _subject_with_images(results, task)
        pdf = results / "reports" / f"{subject}.pdf"
        out = tmp_path / task
        subprocess.run(["pdftoppm", "-r", "40", "-png", str(pdf), str(out)], check=True)
        pages = sorted(tmp_path.glob(f"{task}*.png"))
        assert pages, f"{pdf}: pdftoppm rendered no page"
        for page in pages:
            assert _not_blank(page) > 0.01, f"{pdf}: page {page.name} is blank"
