from __future__ import annotations

from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest

from medcnn.io.nifti import write_nifti
from medcnn.report.segmentation import (
    instance_colours,
    lesion_slices,
    nuclei_contours,
    overlay_slices,
)

#: Stored like an ingested DICOM volume: i towards the patient's left, j towards posterior
#: (LPS voxel axes), anisotropic voxels, so the figure must reorient to RAS+ itself.
AFFINE = np.array(
    [[-0.8, 0.0, 0.0, 20.0], [0.0, -0.8, 0.0, 30.0], [0.0, 0.0, 3.0, -40.0], [0, 0, 0, 1.0]]
)


def ct_with_lesion(tmp_path: Path, lesion: bool = True) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    volume = rng.normal(40.0, 10.0, (48, 40, 12)).astype(np.float32)
    mask = np.zeros(volume.shape, dtype=np.uint8)
    if lesion:
        i, j, k = np.indices(volume.shape)
        # A lesion at small i: with i pointing to the patient's left, that is their right.
        inside = ((i - 10) / 5.0) ** 2 + ((j - 20) / 5.0) ** 2 + ((k - 6) / 2.0) ** 2 <= 1
        mask[inside] = 1
        volume[inside] += 60.0
    write_nifti(tmp_path / "ct.nii.gz", volume, AFFINE)
    write_nifti(tmp_path / "mask.nii.gz", mask, AFFINE, dtype=np.uint8)
    return tmp_path / "ct.nii.gz", tmp_path / "mask.nii.gz"


def red_pixels(png: Path) -> np.ndarray:
    pixels = mpimg.imread(png)[..., :3]
    return (pixels[..., 0] > 0.8) & (pixels[..., 1] < 0.25) & (pixels[..., 2] < 0.25)


def test_lesion_slices_go_through_each_lesion():
    mask = np.zeros((10, 10, 30), dtype=np.uint8)
    mask[2:8, 2:8, 3:6] = 1  # big lesion, 36 voxels on each of slices 3..5
    mask[5, 5, 4] = 0  # so slice 3 is its largest
    mask[1:3, 1:3, 20:23] = 1  # small lesion, slices 20..22
    mask[1, 1, 20] = mask[1, 1, 22] = 0  # largest on slice 21
    assert lesion_slices(mask, 2) == [3, 21]
    chosen = lesion_slices(mask, 4)
    assert len(chosen) == 4 and {3, 21} <= set(chosen)
    assert all(mask[:, :, k].any() for k in chosen)
    assert lesion_slices(np.zeros((4, 4, 11)), 3) == [1, 5, 9]
    with pytest.raises(ValueError, match="3D"):
        lesion_slices(np.zeros((4, 4)), 1)


def test_overlay_draws_the_lesion_on_the_patients_right_in_radiological_view(tmp_path):
    image, mask = ct_with_lesion(tmp_path)
    out = overlay_slices(image, mask, tmp_path / "figs" / "overlay.png", n_slices=1)
    assert out.is_file()
    red = red_pixels(out)
    assert red.sum() > 20
    # Radiological convention: the patient's right is on the viewer's left.
    columns = np.nonzero(red)[1]
    assert columns.max() < red.shape[1] / 2
    several = overlay_slices(image, mask, tmp_path / "five.png", n_slices=5)
    assert mpimg.imread(several).shape[1] > 3 * mpimg.imread(out).shape[1]


def test_overlay_without_lesion_has_no_mask_colour(tmp_path):
    image, mask = ct_with_lesion(tmp_path, lesion=False)
    out = overlay_slices(image, mask, tmp_path / "overlay.png", n_slices=3)
    pixels = mpimg.imread(out)
    assert pixels[..., :3].std() > 0.05  # the image itself is drawn
    assert red_pixels(out).sum() == 0


def test_overlay_refuses_a_mask_on_another_grid(tmp_path):
    image, _ = ct_with_lesion(tmp_path)
    write_nifti(tmp_path / "other.nii.gz", np.zeros((48, 40, 11)), AFFINE, dtype=np.uint8)
    with pytest.raises(ValueError, match="not on the grid"):
        overlay_slices(image, tmp_path / "other.nii.gz", tmp_path / "x.png")


def nuclei_tile(tmp_path: Path, rgb: bool) -> tuple[Path, Path, np.ndarray, np.ndarray]:
    """A 48 x 32 tile (i = column) with two touching square nuclei and one apart."""
    instances = np.zeros((48, 32), dtype=np.int32)
    instances[4:14, 4:14] = 30
    instances[14:24, 4:14] = 7  # touches nucleus 30 along i = 13/14
    instances[30:40, 18:28] = 12
    grey = np.where(instances > 0, 60, 200).astype(np.uint8)
    affine = np.diag([-0.5, -0.5, 1.0, 1.0])
    if rgb:
        tile = np.stack([grey, grey // 2, grey], axis=-1)[:, :, None, None, :]
        write_nifti(tmp_path / "tile.nii.gz", tile, affine, dtype=np.uint8)
    else:
        write_nifti(tmp_path / "tile.nii.gz", grey[:, :, None].astype(np.float32), affine)
    write_nifti(tmp_path / "inst.nii.gz", instances[:, :, None], affine, dtype=np.int32)
    return tmp_path / "tile.nii.gz", tmp_path / "inst.nii.gz", instances, grey


@pytest.mark.parametrize("rgb", [False, True])
def test_nuclei_contours_outline_each_nucleus_in_its_colour(tmp_path, rgb):
    image, inst, instances, grey = nuclei_tile(tmp_path, rgb)
    out = nuclei_contours(image, inst, tmp_path / "nuclei.png", min_side_px=96)
    pixels = mpimg.imread(out)[..., :3]
    assert pixels.shape == (64, 96, 3)  # rows = j, columns = i, enlarged twice
    colours = instance_colours(4)  # ids 0, 7, 12, 30: nucleus k in sorted order -> row k-1
    # The top-left corner of nucleus 30 (i = 4, j = 4) is on its contour.
    np.testing.assert_allclose(pixels[8, 8], colours[2], atol=1 / 255)
    np.testing.assert_allclose(pixels[8, 28], colours[0], atol=1 / 255)  # nucleus 7, i = 14
    # The two touching nuclei are told apart where they meet.
    assert not np.allclose(pixels[16, 27], pixels[16, 28], atol=0.1)
    # No contour colour inside a nucleus or far from all of them.
    for row, col in ((18, 18), (60, 4)):
        assert np.ptp(pixels[row, col]) < 0.5 * np.ptp(colours, axis=1).min()
    if rgb:  # uint8 RGB shown as stored
        np.testing.assert_allclose(pixels[60, 4], [200 / 255, 100 / 255, 200 / 255], atol=1e-6)
