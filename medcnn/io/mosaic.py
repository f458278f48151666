"""Siemens mosaic files (several slices tiled in one frame) via nibabel's CSA-aware wrapper."""

from __future__ import annotations

import warnings as pywarnings

import numpy as np

from medcnn.io import geometry
from medcnn.io.dicom import DicomImage, DicomReadError, pixel_spacing
from medcnn.io.dicom_decode import decode_file
from medcnn.io.dicom_frames import FrameInfo, time_order
from medcnn.io.dicom_meta import acquisition_meta, compact


def assemble_mosaic(frames: list[FrameInfo]) -> DicomImage:
    """Siemens mosaic files (one volume each) via nibabel's CSA-aware wrapper."""
    with pywarnings.catch_warnings():
        # nibabel warns on import that its DICOM readers are experimental; this use (Siemens
        # mosaic) is the one they are made and tested for.
        pywarnings.simplefilter("ignore")
        from nibabel.nicom import dicomwrappers

    volumes = []
    affine = None
    first_ds = None
    for info in sorted(frames, key=time_order):
        ds, _ = decode_file(info.path, header=True)
        assert ds is not None  # header=True always returns the dataset
        with pywarnings.catch_warnings():
            pywarnings.simplefilter("ignore")
            try:
                wrapper = dicomwrappers.wrapper_from_data(ds)
                # nibabel: (row, column, slice) with the affine's first axis down a column.
                volume = np.asarray(wrapper.get_data(), dtype=np.float64).transpose(1, 0, 2)
                lps = np.asarray(wrapper.affine, dtype=float)[:, [1, 0, 2, 3]]
            except Exception as exc:  # nibabel raises several types for odd CSA headers
                raise DicomReadError(f"{info.path.name}: cannot unpack mosaic: {exc}") from exc
        if affine is None:
            affine, first_ds = lps, ds
        elif not np.allclose(affine, lps, atol=1e-3):
            raise DicomReadError(f"{info.path.name}: mosaic geometry differs within the series")
        volumes.append(volume)
    assert first_ds is not None and affine is not None  # frames is not empty
    data = np.stack(volumes, axis=-1) if len(volumes) > 1 else volumes[0]
    meta = acquisition_meta(first_ds)
    spacing, source = pixel_spacing(first_ds)
    meta.update(
        {
            "PhotometricInterpretation": frames[0].photometric,
            "PixelSpacing": list(spacing),
            "PixelSpacingSource": source,
            "ImageOrientationPatientDICOM": list(frames[0].orientation()),
            "NumberOfSlices": int(data.shape[2]),
            "NumberOfVolumes": len(volumes),
            "SliceStep": float(np.linalg.norm(affine[:3, 2])),
            "Mosaic": True,
        }
    )
    header = first_ds.copy()
    del header.PixelData
    return DicomImage(
        data=compact(data), affine=geometry.LPS_TO_RAS @ affine, header=header, meta=meta
    )
