"""How large a lesion report's slice viewer makes the HTML, for a CT of a given size.

Usage: ``python bench/viewer_size.py [--shape 512 512 300] [--spacing 0.7 0.7 1.0]
[--browser]``

Writes a CT-like volume (a body of fat and soft tissue with organs, spine and ribs in HU,
noise of 12 HU, three lesions: what the demo draws, at full size) and its lesion mask as
NIfTI, makes the viewer's volumes with :func:`medcnn.report.viewer.viewer_volumes` (the
default budget), renders the viewer section of the subject template into a standalone page
with the NiiVue bundle, and prints a table: voxels shown, the bytes of each part and of the
page, and the time and memory it took (CPU time, this process). With ``--browser``, opens
the page in headless Chromium and prints whether the viewer started.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from medcnn.report.html import environment, layout
from medcnn.report.viewer import MAX_VOXELS, niivue_bundle, viewer_volumes


def phantom(shape: tuple[int, int, int], spacing: tuple[float, float, float], seed: int = 0):
    """HU volume ``(i, j, k)`` float32 and its lesion mask uint8."""
    rng = np.random.default_rng(seed)
    i, j = np.meshgrid(
        (np.arange(shape[0]) - shape[0] / 2) * spacing[0],
        (np.arange(shape[1]) - shape[1] / 2) * spacing[1],
        indexing="ij",
    )
    a, b = 0.42 * shape[0] * spacing[0], 0.32 * shape[1] * spacing[1]
    body = (i / a) ** 2 + (j / b) ** 2 <= 1
    inner = (i / (a - 12)) ** 2 + (j / (b - 12)) ** 2 <= 1
    slice_hu = np.full(shape[:2], -1000.0, np.float32)
    slice_hu[body], slice_hu[inner] = -100.0, 40.0
    slice_hu[((i + a * 0.35) / (a * 0.4)) ** 2 + (j / (b * 0.5)) ** 2 <= 1] = 60.0  # an organ
    spine = (i / 18) ** 2 + ((j - b * 0.62) / 16) ** 2 <= 1
    slice_hu[spine] = 700.0
    for angle in np.linspace(0, 2 * np.pi, 12, endpoint=False):
        ci, cj = (a - 18) * np.cos(angle), (b - 18) * np.sin(angle)
        slice_hu[((i - ci) / 6) ** 2 + ((j - cj) / 6) ** 2 <= 1] = 650.0
    hu = np.repeat(slice_hu[:, :, None], shape[2], axis=2)
    mask = np.zeros(shape, np.uint8)
    k = (np.arange(shape[2]) - shape[2] / 2) * spacing[2]
    for n in range(3):
        centre = (rng.uniform(-a / 3, a / 3), rng.uniform(-b / 3, b / 3), rng.uniform(-40, 40))
        r = rng.uniform(8, 20)
        ball = (
            (i[:, :, None] - centre[0]) ** 2
            + (j[:, :, None] - centre[1]) ** 2
            + (k[None, None, :] - centre[2]) ** 2
        ) <= r**2
        hu[ball] += 90.0 if n % 2 == 0 else -80.0
        mask[ball] = 1
    hu = ndimage.gaussian_filter(hu, sigma=0.6)
    hu += rng.normal(0, 12, shape).astype(np.float32)
    return hu.astype(np.float32), mask


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=(512, 512, 300))
    parser.add_argument("--spacing", type=float, nargs=3, default=(0.7, 0.7, 1.0))
    parser.add_argument("--max-voxels", type=int, default=MAX_VOXELS)
    parser.add_argument("--browser", action="store_true", help="open it in headless Chromium")
    args = parser.parse_args()
    shape, spacing = tuple(args.shape), tuple(args.spacing)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        hu, mask = phantom(shape, spacing)
        affine = np.diag([*spacing, 1.0])
        nib.save(nib.Nifti1Image(hu.astype(np.int16), affine), work / "ct.nii.gz")
        nib.save(nib.Nifti1Image(mask, affine), work / "mask.nii.gz")
        del hu
        cpu, wall = time.process_time(), time.perf_counter()
        sidecar = {"WindowCenter": [40.0], "WindowWidth": [400.0]}
        viewer = viewer_volumes(
            work / "ct.nii.gz", work / "mask.nii.gz", sidecar, max_voxels=args.max_voxels
        )
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        env = environment()
        page = env.from_string(
            '<!DOCTYPE html><html><head><meta charset="utf-8"><title>viewer</title></head>'
            "<body>{% include 'viewer.html.j2' %}"
            "{% include 'viewer_script.html.j2' %}</body></html>"
        ).render(
            v=layout()["subject"]["sections"]["viewer"],
            viewer=viewer,
            name="bench",
            niivue=niivue_bundle(),
        )
        html = work / "viewer.html"
        html.write_text(page)
        size = html.stat().st_size
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        bundle = len(niivue_bundle())
        rows = [
            ("CT shape (voxels)", " x ".join(map(str, shape))),
            ("shown (voxels)", " x ".join(map(str, viewer["shape"]))),
            ("zoom factor", f"{viewer['factor']:.3f}"),
            ("image, base64 .nii.gz (MB)", f"{len(viewer['image']) / 1e6:.2f}"),
            ("mask, base64 .nii.gz (MB)", f"{len(viewer['mask']) / 1e6:.3f}"),
            ("NiiVue bundle, gzip + base64 (MB)", f"{bundle / 1e6:.2f}"),
            ("viewer page, total (MB)", f"{size / 1e6:.2f}"),
            ("viewer_volumes CPU time (s)", f"{cpu:.1f}"),
            ("viewer_volumes wall time (s)", f"{wall:.1f}"),
            ("peak memory of this process (MB)", f"{peak:.0f}"),
        ]
        if args.browser:
            sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
            from tests.report import chromium

            driver = chromium.start()
            try:
                started = time.perf_counter()
                check = chromium.open_page(driver, html, settle_seconds=120)
                rows.append(("viewer in headless Chromium", ", ".join(check.viewers)))
                rows.append(
                    ("page open to viewer ready (s)", f"{time.perf_counter() - started:.1f}")
                )
                rows.append(("console errors", str(len(check.console_errors))))
                rows.append(("non-local requests", str(len(check.remote_requests))))
            finally:
                driver.quit()
    width = max(len(r[0]) for r in rows)
    print(f"| {'what'.ljust(width)} | value |\n|{'-' * (width + 2)}|-------|")
    for name, value in rows:
        print(f"| {name.ljust(width)} | {value} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
