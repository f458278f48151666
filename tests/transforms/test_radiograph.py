from __future__ import annotations

import nibabel as nib
import numpy as np

from medcnn.stages.preprocess.classification import preprocess_image
from medcnn.transforms.radiograph import CLAHE, KEY, augment_transforms

PLANS = {"size": 32, "intensity": {"lower_percentile": 0.0, "upper_percentile": 100.0}}


def test_aspect_ratio_kept_and_padded(tmp_path):
    # 64 columns x 32 rows: after resizing the longer side to 32, rows become 16 and the
    # remaining 16 are zero padding, 8 on each side.
    data = np.full((64, 32, 1), 1000.0, dtype=np.float32)
    data[:, :, 0] += np.linspace(0, 3000, 32)[None, :]  # brighter down the rows
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "wide.nii.gz")
    out = preprocess_image(tmp_path / "wide.nii.gz", PLANS)
    assert out.shape == (1, 32, 32) and out.dtype == np.float32
    assert np.all(out[0, :, :8] == 0) and np.all(out[0, :, 24:] == 0)
    inside = out[0, :, 8:24]
    assert inside.min() >= 0.0 and inside.max() <= 1.0
    assert inside[:, -1].mean() > 0.9 and inside[:, 0].mean() < 0.1
    # intensity rises monotonically down the rows, as in the source
    assert np.all(np.diff(inside.mean(axis=0)) > 0)


def test_bit_depth_does_not_matter(tmp_path):
    rng = np.random.default_rng(0)
    base = rng.random((40, 40, 1)).astype(np.float32)
    outs = []
    for scale in (255.0, 4095.0, 65535.0):
        nib.save(nib.Nifti1Image(base * scale, np.eye(4)), tmp_path / f"{scale}.nii.gz")
        outs.append(preprocess_image(tmp_path / f"{scale}.nii.gz", PLANS))
    np.testing.assert_allclose(outs[0], outs[1], atol=1e-5)
    np.testing.assert_allclose(outs[0], outs[2], atol=1e-5)


def test_augmentation_never_flips_left_right():
    from monai.utils import set_determinism

    set_determinism(0)
    image = np.zeros((1, 64, 64), dtype=np.float32)
    image[0, :16, :] = 1.0  # a bright band on the image's left (low i)
    aug = augment_transforms(64)
    for _ in range(20):
        out = np.asarray(aug({KEY: image.copy()})[KEY])
        assert out[0, :24].mean() > out[0, 40:].mean()
    set_determinism(None)


def test_flip_only_when_configured():
    from monai.utils import set_determinism

    set_determinism(0)
    image = np.zeros((1, 64, 64), dtype=np.float32)
    image[0, :16, :] = 1.0
    aug = augment_transforms(64, flip=True)
    flipped = [
        np.asarray(aug({KEY: image.copy()})[KEY])[0, 40:].mean() > image[0, 40:].mean() + 0.3
        for _ in range(20)
    ]
    set_determinism(None)
    assert 3 <= sum(flipped) <= 17


def test_clahe_raises_local_contrast_and_stays_in_range():
    rng = np.random.default_rng(0)
    # a low-contrast structure (0.50 vs 0.52) on a bright half and a dark half
    image = np.full((1, 64, 64), 0.2, dtype=np.float32)
    image[0, :, 32:] = 0.8
    image[0, 8:24, 8:24] += 0.02
    image += rng.normal(0, 0.001, image.shape).astype(np.float32)
    out = CLAHE(clip_limit=0.02)(image)
    assert out.shape == image.shape and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    before = image[0, 8:24, 8:24].mean() - image[0, 8:24, 24:32].mean()
    after = out[0, 8:24, 8:24].mean() - out[0, 8:24, 24:32].mean()
    assert after > 2 * before


def test_twelve_bit_with_burned_in_marker(tmp_path):
    # A 12-bit image whose few brightest pixels are a burned-in "L" marker at 4095: the
    # percentile window ignores them, so anatomy keeps the whole 0..1 range.
    rng = np.random.default_rng(1)
    data = (rng.random((48, 48, 1)) * 1500 + 500).astype(np.float32)
    data[2:4, 2:4, 0] = 4095
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "marker.nii.gz")
    plans = {"size": 48, "intensity": {"lower_percentile": 0.5, "upper_percentile": 99.5}}
    out = preprocess_image(tmp_path / "marker.nii.gz", plans)
    assert np.percentile(out, 99) > 0.95
