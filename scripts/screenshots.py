"""The README's screenshots of the reports, taken in headless Chromium from a run's results.

Usage: ``python scripts/screenshots.py [--results results] [--out docs/img]``

After ``make demo`` (or any run with a classification and a 3D segmentation task), opens
``results/reports/cohort.html`` and two patient reports in Debian's Chromium (Selenium, as the
browser tests; nothing is downloaded) and writes, each scaled to ``--width`` pixels and
reduced to 256 colours so it stays small:

- ``cohort.png``: the top of the cohort report down to the first task's gallery;
- ``patient-lesion.png``: a held-out CT patient's segmentation with the slice viewer running;
- ``patient-cxr.png``: a held-out radiograph patient's prediction and saliency maps.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.report import chromium  # noqa: E402


def _held_out_subject(results: Path, task: str) -> str:
    """The first test-split subject of ``task`` that has a predicted image."""
    split = json.loads((results / "splits" / f"{task}.json").read_text())
    for subject in sorted(split["test"]):
        path = results / "predict" / task / f"{subject}.json"
        if path.exists() and json.loads(path.read_text())["images"]:
            return subject
    raise SystemExit(f"{results}: no held-out {task} subject with a prediction")


def _band(driver, first: str, last: str) -> tuple[float, float]:
    """The page band from the top of CSS selector ``first`` to the bottom of ``last``."""
    return driver.execute_script(
        "const a = document.querySelector(arguments[0]), b = document.querySelector(arguments[1]);"
        "const y = window.scrollY;"
        "return [a.getBoundingClientRect().top + y - 8, b.getBoundingClientRect().bottom + y + 8];",
        first,
        last,
    )


def _save_small(png: Path, out: Path, width: int) -> Path:
    image = Image.open(png).convert("RGB")
    if image.width > width:
        image = image.resize((width, round(image.height * width / image.width)), Image.LANCZOS)
    image.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(out, optimize=True)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--out", type=Path, default=Path("docs/img"))
    parser.add_argument("--width", type=int, default=900, help="width of the PNGs (px)")
    parser.add_argument("--classification", default="cxr", help="classification task")
    parser.add_argument("--segmentation", default="lesion", help="3D segmentation task")
    args = parser.parse_args()
    if why := chromium.missing():
        raise SystemExit(f"no headless Chromium: {why}")
    reports = args.results / "reports"
    args.out.mkdir(parents=True, exist_ok=True)
    lesion = _held_out_subject(args.results, args.segmentation)
    cxr = _held_out_subject(args.results, args.classification)
    first = args.classification
    pages = [
        # (page, file, band: first selector, last selector)
        ("cohort.html", "cohort.png", ("h1", f"#gallery-cases-{first}")),
        (f"{lesion}.html", "patient-lesion.png", ("h1", "div.viewer")),
        (f"{cxr}.html", "patient-cxr.png", ("h1", "section.image")),
    ]
    driver = chromium.start(width=1200, height=1000)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for page, name, (top, bottom) in pages:
                check = chromium.open_page(driver, reports / page)
                problems = check.broken_images + check.remote_requests + check.console_errors
                if problems or "failed" in check.viewers:
                    raise SystemExit(f"{page}: {problems or check.viewers}")
                y0, y1 = _band(driver, top, bottom)
                shot = chromium.full_page_png(driver, Path(tmp) / name, y0, y1)
                out = _save_small(shot, args.out / name, args.width)
                print(f"{out} ({out.stat().st_size // 1024} KB) from {reports / page}")
    finally:
        driver.quit()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
