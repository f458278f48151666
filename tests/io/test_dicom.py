from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from medcnn.io.dicom import DicomReadError, looks_like_dicom, read_header, read_image

DX = "1.2.840.10008.5.1.4.1.1.1.1"


def write_dx(path: Path, pixels: np.ndarray, photometric="MONOCHROME2", bits=12, **tags) -> Path:
    """A minimal valid DX image; ``pixels`` is (rows, columns) uint16."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = DX
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = DX
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.PatientID = "MRN1"
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    for key, value in tags.items():
        setattr(ds, key, value)
    ds.set_pixel_data(pixels.astype(np.uint16), photometric, bits)
    ds.save_as(path, enforce_file_format=True)
    return path


def test_monochrome2_values_spacing_and_axes(tmp_path):
    pixels = np.arange(12, dtype=np.uint16).reshape(3, 4) * 100  # 3 rows, 4 columns
    path = write_dx(tmp_path / "a", pixels, PixelSpacing=[0.2, 0.1])
    image = read_image(path)
    assert image.data.shape == (4, 3, 1)  # (i=columns, j=rows, k)
    assert image.data[1, 2, 0] == pixels[2, 1]
    # i steps 0.1 mm along a row (columns), j 0.2 mm down (rows); LPS -> RAS flips x and y.
    np.testing.assert_allclose(np.diag(image.affine)[:3], [-0.1, -0.2, 1.0])
    assert image.meta["PixelSpacingSource"] == "PixelSpacing"
    assert image.warnings == []


def test_monochrome1_is_inverted_over_the_stored_range(tmp_path):
    pixels = np.array([[0, 1000], [4095, 2000]], dtype=np.uint16)
    path = write_dx(tmp_path / "m1", pixels, photometric="MONOCHROME1", bits=12)
    data = read_image(path).data[:, :, 0].T  # back to (rows, columns)
    np.testing.assert_array_equal(data, 4095 - pixels)


def test_rescale_is_applied_before_inversion(tmp_path):
    pixels = np.array([[0, 10], [20, 30]], dtype=np.uint16)
    path = write_dx(tmp_path / "r", pixels, RescaleSlope=2, RescaleIntercept=-100)
    data = read_image(path).data[:, :, 0].T
    np.testing.assert_array_equal(data, pixels * 2.0 - 100)


def test_imager_pixel_spacing_is_used_when_pixel_spacing_is_absent(tmp_path):
    path = write_dx(tmp_path / "i", np.zeros((4, 4)), ImagerPixelSpacing=[0.15, 0.15])
    image = read_image(path)
    assert image.meta["PixelSpacingSource"] == "ImagerPixelSpacing"
    np.testing.assert_allclose(np.abs(np.diag(image.affine)[:2]), [0.15, 0.15])


def test_missing_spacing_is_a_warning_not_an_error(tmp_path):
    image = read_image(write_dx(tmp_path / "n", np.zeros((4, 4))))
    assert image.warnings and "PixelSpacing" in image.warnings[0]


def test_pydicom_ct_slice_geometry():
    """pydicom's bundled CT_small.dcm: the affine follows IOP/IPP (LPS -> RAS)."""
    path = Path(get_testdata_file("CT_small.dcm"))
    ds = pydicom.dcmread(path)
    image = read_image(path)
    ipp = [float(v) for v in ds.ImagePositionPatient]
    np.testing.assert_allclose(image.affine[:3, 3], [-ipp[0], -ipp[1], ipp[2]])
    # Voxel (i, j) of the NIfTI is pixel (row j, column i), rescaled to HU.
    hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    assert image.data[10, 20, 0] == pytest.approx(hu[20, 10])


def test_broken_inputs_raise_with_reasons(tmp_path):
    good = write_dx(tmp_path / "good.dcm", np.ones((32, 32)) * 7)
    truncated = tmp_path / "trunc.dcm"
    truncated.write_bytes(good.read_bytes()[: int(good.stat().st_size * 0.6)])
    text = tmp_path / "notes.dcm"
    text.write_text("not an image\n" * 20)
    no_pixels = tmp_path / "nopix.dcm"
    ds = pydicom.dcmread(good)
    del ds.PixelData
    ds.save_as(no_pixels)

    with pytest.raises(DicomReadError, match="cannot decode pixel data|not a readable"):
        read_image(truncated)
    with pytest.raises(DicomReadError, match="not a DICOM file|not a readable"):
        read_header(text)
    with pytest.raises(DicomReadError, match="no pixel data"):
        read_image(no_pixels)
    assert looks_like_dicom(good) and not looks_like_dicom(text)
