"""Single-frame DICOM series written file by file with pydicom, for the ingest parity tests.

``write_slices`` writes one file per (volume, slice) of one series: the geometry (orientation,
position, 0.5 x 0.8 mm pixels, 2 mm slices unless told otherwise) and the series' own tags
are the same in every file; ``volume_tag`` numbers the volumes and ``each`` adds what changes
from file to file (private blocks, b-values, acquisition times).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from tests.io.synthetic import AXIAL, base_dataset


def save(ds: Dataset, pixels: np.ndarray, path: Path, bits: int = 16, colour=False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.set_pixel_data(pixels, "RGB" if colour else "MONOCHROME2", bits)
    ds.save_as(path, enforce_file_format=True)
    return path


def write_slices(
    folder: Path,
    pixels: np.ndarray | np.random.Generator,
    ipps: Sequence,
    *,
    volumes: int | None = None,
    iop: Sequence[float] = AXIAL,
    slice_major: bool = False,
    volume_tag: str | None = None,
    each: Callable[[Dataset, int, int], None] | None = None,
    name: str = "IM{instance:04d}",
    first_instance: int = 1,
    study_uid: str | None = None,
    series_uid: str | None = None,
    slice_thickness: float | None = 2.0,
    bits: int = 16,
    colour: bool = False,
    **tags,
) -> list[Path]:
    """Write a series, one file per slice of each volume; return the paths in writing order.

    ``pixels`` is ``(volumes, slices, rows, columns)`` (a colour one ends in 3 samples), or a
    generator that gives each file, in writing order, its own 4 x 5 int16 values 0..999.
    ``ipps`` holds one volume's slice positions (``None``: no ImagePositionPatient). Files
    are written volume by volume (``slice_major``: slice by slice) with InstanceNumbers
    counting from ``first_instance``; ``name`` is formatted with ``instance``, ``index``
    (0-based, in writing order), ``volume`` and ``z``. ``volume_tag`` names a tag set to
    volume + 1, ``each(ds, volume, z)`` finishes a file's dataset before it is saved.
    """
    drawn = isinstance(pixels, np.random.Generator)
    if volumes is None:
        volumes = 1 if drawn else len(pixels)
    study_uid = study_uid or generate_uid()
    series_uid = series_uid or generate_uid()
    order = [(v, z) for v in range(volumes) for z in range(len(ipps))]
    if slice_major:
        order.sort(key=lambda vz: (vz[1], vz[0]))
    paths = []
    for index, (volume, z) in enumerate(order):
        instance = first_instance + index
        geometry = {"ImageOrientationPatient": list(iop)}
        if ipps[z] is not None:
            geometry["ImagePositionPatient"] = [float(x) for x in ipps[z]]
        geometry["PixelSpacing"] = [0.5, 0.8]
        if slice_thickness is not None:
            geometry["SliceThickness"] = slice_thickness
        if volume_tag is not None:
            geometry[volume_tag] = volume + 1
        ds = base_dataset(
            StudyInstanceUID=study_uid,
            SeriesInstanceUID=series_uid,
            InstanceNumber=instance,
            **geometry,
            **tags,
        )
        if each is not None:
            each(ds, volume, z)
        data = pixels.integers(0, 1000, (4, 5)).astype(np.int16) if drawn else pixels[volume][z]
        path = folder / f"{name.format(instance=instance, index=index, volume=volume, z=z)}.dcm"
        paths.append(save(ds, data, path, bits=bits, colour=colour))
    return paths
