"""The slice viewer's volumes and the vendored NiiVue bundle."""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import re

import nibabel as nib
import numpy as np
import pytest

from medcnn.report.viewer import NIIVUE_VERSION, VENDOR, niivue_bundle, viewer_volumes


def _nifti(b64: str) -> nib.Nifti1Image:
    raw = gzip.decompress(base64.b64decode(b64))
    return nib.Nifti1Image.from_bytes(raw)


def _case(tmp_path, shape=(40, 30, 20), spacing=(0.8, 0.8, 2.5)):
    rng = np.random.default_rng(0)
    hu = rng.normal(40, 10, shape).astype(np.float32)
    hu[:5] = -1000.0
    mask = np.zeros(shape, dtype=np.uint8)
    mask[20:26, 10:16, 8:12] = 1
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = (-10.0, 5.0, 30.0)
    nib.save(nib.Nifti1Image(hu, affine), tmp_path / "ct.nii.gz")
    nib.save(nib.Nifti1Image(mask, affine), tmp_path / "mask.nii.gz")
    return hu, mask, affine


def test_small_volume_is_kept_as_is_in_the_dicom_window(tmp_path):
    hu, mask, affine = _case(tmp_path)
    sidecar = {"WindowCenter": [40.0], "WindowWidth": [400.0]}
    v = viewer_volumes(tmp_path / "ct.nii.gz", tmp_path / "mask.nii.gz", sidecar)
    assert v["factor"] == 1.0 and v["shape"] == [40, 30, 20] and v["window"] == (-160.0, 240.0)
    image, labels = _nifti(v["image"]), _nifti(v["mask"])
    assert image.get_data_dtype() == np.uint8 and labels.get_data_dtype() == np.uint8
    np.testing.assert_allclose(image.affine, affine, atol=1e-5)
    # the header's scaling turns the bytes back into HU, to within a 255th of the window
    shown = np.asanyarray(image.dataobj)
    np.testing.assert_allclose(shown[10:], np.clip(hu[10:], -160, 240), atol=400 / 255)
    assert shown[0, 0, 0] == pytest.approx(-160.0)
    np.testing.assert_array_equal(np.asanyarray(labels.dataobj), mask)
    # the viewer opens at the lesion's centre (22.5, 12.5, 9.5)
    assert np.abs(np.array(v["focus"]) - (22.5, 12.5, 9.5)).max() <= 0.5
    assert v["bytes"] == len(v["image"]) + len(v["mask"])


def test_large_volume_is_resampled_to_the_budget_over_the_same_extent(tmp_path):
    _, mask, affine = _case(tmp_path, shape=(64, 64, 32))
    v = viewer_volumes(tmp_path / "ct.nii.gz", tmp_path / "mask.nii.gz", max_voxels=32**3)
    assert np.prod(v["shape"]) <= 1.05 * 32**3 and v["factor"] < 1
    image, labels = _nifti(v["image"]), _nifti(v["mask"])
    old = np.array([64, 64, 32])
    new = np.array(v["shape"])

    def corners(aff, shape):  # the outer faces of the first and last voxel, in mm
        return aff[:3, :3] @ np.array([-0.5, -0.5, -0.5]) + aff[:3, 3], aff[:3, :3] @ (
            np.array(shape) - 0.5
        ) + aff[:3, 3]

    for a, b in zip(corners(affine, old), corners(image.affine, new), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-4)
    # the lesion survives the resampling, about as large in mL
    voxel_ml = np.prod(np.abs(np.diag(image.affine)[:3])) / 1000
    kept = np.asanyarray(labels.dataobj).sum() * voxel_ml
    assert kept == pytest.approx(mask.sum() * np.prod(np.diag(affine)[:3]) / 1000, rel=0.5)


def test_a_mask_on_another_grid_and_a_2d_image_are_refused(tmp_path):
    _case(tmp_path)
    nib.save(nib.Nifti1Image(np.zeros((40, 30, 21), np.uint8), np.eye(4)), tmp_path / "m2.nii.gz")
    with pytest.raises(ValueError, match="m2.nii.gz: label map .* not on the grid"):
        viewer_volumes(tmp_path / "ct.nii.gz", tmp_path / "m2.nii.gz")
    flat = np.zeros((16, 16, 1), np.float32)
    nib.save(nib.Nifti1Image(flat, np.eye(4)), tmp_path / "tile.nii.gz")
    nib.save(nib.Nifti1Image(flat.astype(np.uint8), np.eye(4)), tmp_path / "tm.nii.gz")
    with pytest.raises(ValueError, match="needs a 3D image"):
        viewer_volumes(tmp_path / "tile.nii.gz", tmp_path / "tm.nii.gz")


def test_the_vendored_bundle_is_the_one_its_readme_names():
    readme = (VENDOR / "README.md").read_text()
    stated = re.search(
        r"`niivue.umd.js` SHA-256 \(uncompressed\) \| `([0-9a-f]{64})`", readme
    ).group(1)
    bundle = gzip.decompress((VENDOR / "niivue.umd.js.gz").read_bytes())
    assert hashlib.sha256(bundle).hexdigest() == stated
    assert f"@niivue/niivue` {NIIVUE_VERSION}" in readme
    assert "BSD 2-Clause" in (VENDOR / "LICENSE").read_text()
    # what the report embeds unpacks to the bundle itself
    packed = base64.b64decode(niivue_bundle())
    assert gzip.GzipFile(fileobj=io.BytesIO(packed)).read() == bundle
