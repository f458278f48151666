"""Synthetic cohorts for the demo and the tests, written as real files (DICOM, PNG).

:mod:`medcnn.demo.cxr` draws chest radiographs with labels; :mod:`medcnn.demo.segmentation`
draws CT series with lesion masks and nuclei tiles with one mask per nucleus.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger("medcnn")


def write_demo_data(
    out: str | Path,
    cohort: str = "cxr",
    patients: int | None = None,
    size: int | None = None,
    slices: int = 32,
    spacing: Sequence[float] = (1.5, 1.5, 3.0),
    tiles: int = 14,
    seed: int = 0,
) -> None:
    """Write one synthetic cohort (``cxr``, ``ct`` or ``nuclei``) below ``out`` and log what
    it holds (``None``: the cohort's own default patient count and size)."""
    if cohort == "ct":
        from medcnn.demo.segmentation import write_ct_cohort

        cases = write_ct_cohort(
            Path(out) / "ct",
            n_patients=patients or 10,
            size=size or 64,
            n_slices=slices,
            spacing=tuple(spacing),
            seed=seed,
        )
        lesions = sum(c.n_lesions for c in cases)
        log.info(f"CT lesion cohort: {len(cases)} patients, {lesions} lesions in {out}/ct")
        return
    if cohort == "nuclei":
        from medcnn.demo.segmentation import write_nuclei_cohort

        tiles = write_nuclei_cohort(
            Path(out) / "nuclei", n_tiles=tiles, size=size or 128, seed=seed
        )
        nuclei = sum(t.n_nuclei for t in tiles)
        log.info(f"nuclei cohort: {len(tiles)} tiles, {nuclei} nuclei in {out}/nuclei")
        return
    from medcnn.demo.cxr import write_demo_cohort

    images = write_demo_cohort(
        Path(out), n_patients=patients or 48, seed=seed, image_size=size or 256
    )
    patients = len({i.patient_id for i in images})
    log.info(f"demo cohort: {len(images)} images of {patients} patients in {out}")
