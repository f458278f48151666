"""Segmentation plans, preprocessing and training transforms on tiny synthetic NIfTIs."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from medcnn.planning.segmentation import estimate_memory_mb, fingerprint
from medcnn.transforms.segmentation import normalise, preprocess_case, train_transforms
from medcnn.transforms.spatial import SegmentationInputError
from tests.planning.settings import plan

#: The augmentation settings the transforms tests draw patches with, unless they say otherwise.
AUGMENTATION = {"positive_fraction": 1 / 3, "scale_range": (0.85, 1.15), "augment": True}


def save(path, data, affine):
    nib.save(nib.Nifti1Image(data, affine), path)
    return str(path)


def mr_cohort(tmp_path, spacings, shape=(40, 36, 12), seed=0):
    """Skull-stripped-MR-like volumes: zero outside a box 'head', a bright lesion inside."""
    rng = np.random.default_rng(seed)
    cases = []
    for n, spacing in enumerate(spacings):
        image = np.zeros(shape, np.float32)
        image[4:-4, 4:-4, 2:-2] = rng.normal(
            300.0, 20.0, (shape[0] - 8, shape[1] - 8, shape[2] - 4)
        )
        label = np.zeros(shape, np.uint8)
        label[15:25, 12:22, 4:8] = 1
        image[label > 0] += 200.0
        affine = np.diag([*spacing, 1.0])
        cases.append(
            {
                "image": save(tmp_path / f"img{n}.nii.gz", image, affine),
                "label": save(tmp_path / f"lab{n}.nii.gz", label, affine),
            }
        )
    return cases


def test_plans_anisotropic_mr(tmp_path):
    cases = mr_cohort(tmp_path, [(1.0, 1.0, 3.0), (1.0, 1.0, 3.0), (0.8, 0.8, 2.5)])
    plans = plan("lesion", cases, kind="segmentation", modalities=["MR"], memory_budget_mb=4000)
    assert plans["dims"] == 3
    # The median spacing, kept anisotropic; the median shape at that spacing.
    assert plans["target_spacing"] == [1.0, 1.0, 3.0]
    assert plans["median_shape"] == [40, 36, 12]
    assert plans["normalisation"] == {"scheme": "mr"}
    assert plans["classes"] == ["background", "foreground"]
    # In-plane axes are pooled first; z (3 mm) once the in-plane voxel (2 mm) is no finer
    # than half of it; no pooling below 4 voxels (z: 12 -> 6, then no more).
    assert plans["network"]["strides"] == [[2, 2, 1], 2, [2, 2, 1]]
    assert plans["network"]["channels"] == [16, 32, 64, 128]
    # Patch: the median shape rounded up to the network's total stride (8, 8, 2).
    assert plans["patch_size"] == [40, 40, 12]
    fp = plans["fingerprint"]
    assert fp["spacings"][2] == pytest.approx([0.8, 0.8, 2.5])
    assert fp["foreground"][0]["mean"] == pytest.approx(500.0, abs=5.0)


def test_plans_memory_budget_shrinks_the_patch(tmp_path):
    cases = mr_cohort(tmp_path, [(1.0, 1.0, 1.0)], shape=(64, 64, 64))
    big = plan("t", cases, modalities=["MR"], memory_budget_mb=4000)
    small = plan("t", cases, modalities=["MR"], memory_budget_mb=300)
    assert big["patch_size"] == [64, 64, 64]
    assert big["network"]["strides"] == [2, 2, 2, 2]
    assert big["estimated_memory_mb"] == pytest.approx(
        estimate_memory_mb([64] * 3, 2, 3, 1), abs=0.1
    )
    # Halved along the largest extent (ties: the first axis) until it fits; every side
    # remains a multiple of its total stride.
    assert small["patch_size"] == [32, 32, 64]
    assert small["network"]["strides"] == [2, 2, 2, [1, 1, 2]]
    assert small["estimated_memory_mb"] <= 300


def test_ct_normalisation_uses_foreground_percentiles_and_stats(tmp_path):
    rng = np.random.default_rng(1)
    shape = (20, 20, 10)
    image = rng.normal(-800.0, 50.0, shape).astype(np.float32)  # lung-ish background
    label = np.zeros(shape, np.uint8)
    label[5:15, 5:15, 3:7] = 1
    image[label > 0] = rng.normal(40.0, 10.0, int(label.sum()))
    affine = np.diag([0.7, 0.7, 2.0, 1.0])
    cases = [
        {
            "image": save(tmp_path / "i.nii.gz", image, affine),
            "label": save(tmp_path / "l.nii.gz", label, affine),
        }
    ]
    plans = plan("ct", cases, modalities=["CT"])
    fg = image[label > 0].astype(np.float64)  # 400 voxels: all are sampled
    norm = plans["normalisation"]
    assert norm["scheme"] == "ct"
    assert norm["lower"][0] == pytest.approx(np.percentile(fg, 0.5))
    assert norm["upper"][0] == pytest.approx(np.percentile(fg, 99.5))
    assert norm["mean"][0] == pytest.approx(fg.mean())
    assert norm["std"][0] == pytest.approx(fg.std())
    out, lab, meta = preprocess_case(cases[0]["image"], cases[0]["label"], plans)
    expected = (np.clip(image, norm["lower"][0], norm["upper"][0]) - fg.mean()) / fg.std()
    np.testing.assert_allclose(out[0], expected, atol=1e-4)  # RAS already, spacing kept
    assert meta["intensity"]["mean"] == [pytest.approx(fg.mean())]
    np.testing.assert_array_equal(lab[0], label)


def test_mr_normalisation_inside_nonzero(tmp_path):
    cases = mr_cohort(tmp_path, [(1.0, 1.0, 3.0)])
    plans = plan("mr", cases, modalities=["MR"])
    out, _, _ = preprocess_case(cases[0]["image"], None, plans)
    raw = np.asarray(nib.load(cases[0]["image"]).dataobj)
    inside = raw != 0
    assert out[0][inside].mean() == pytest.approx(0.0, abs=1e-5)
    assert out[0][inside].std() == pytest.approx(1.0, abs=1e-4)
    assert np.all(out[0][~inside] == 0.0)


def test_mr_robust_normalisation_ignores_a_large_bright_lesion():
    # A "brain" of 1000 voxels: 800 of tissue at 100 +- 10 (uniform), 200 of lesion at 400.
    rng = np.random.default_rng(0)
    tissue = rng.uniform(90.0, 110.0, 800).astype(np.float32)
    channel = np.zeros((1, 10, 10, 12), np.float32)
    inside = np.zeros(channel.shape[1:], bool)
    inside[:, :, :10] = True
    channel[0][inside] = np.concatenate([tissue, np.full(200, 400.0, np.float32)])
    out, stats = normalise(channel, {"scheme": "mr_robust"})
    values = channel[0][inside]
    q25, median, q75 = np.percentile(values, [25, 50, 75])
    assert stats["mean"] == [pytest.approx(median)]
    assert stats["std"] == [pytest.approx((q75 - q25) / 1.349)]
    np.testing.assert_allclose(out[0][inside], (values - median) / ((q75 - q25) / 1.349), rtol=1e-5)
    assert np.all(out[0][~inside] == 0.0)
    # Median ~102.5 and IQR ~12.5 come from the tissue: the lesion sits ~32 robust SDs above
    # it, where the plain z-score (mean 160, SD 120, both pulled by the lesion) puts it at 2.
    plain, _ = normalise(channel, {"scheme": "mr"})
    lesion = values == 400.0
    assert out[0][inside][lesion][0] == pytest.approx(32.0, abs=1.5)
    assert plain[0][inside][lesion][0] == pytest.approx(2.0, abs=0.05)
    assert abs(np.median(out[0][inside][~lesion])) < 0.5


def rgb_tile(tmp_path, name, seed):
    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 255, (48, 40, 1, 1, 3)).astype(np.uint8)
    img = nib.Nifti1Image(rgb, np.diag([-1.0, -1.0, 1.0, 1.0]))
    img.header.set_intent("vector")
    nib.save(img, tmp_path / name)
    return str(tmp_path / name)


def test_rgb_and_instances(tmp_path):
    instances = np.zeros((48, 40, 1), np.int32)
    instances[5:15, 5:15] = 1
    instances[15:25, 5:15] = 2  # touches nucleus 1
    instances[30:40, 20:30] = 3
    affine = np.diag([-1.0, -1.0, 1.0, 1.0])
    grey = np.full((48, 40, 1), 7, np.uint8)
    grey[instances > 0] = 200
    cases = [
        {
            "image": rgb_tile(tmp_path, "rgb.nii.gz", 0),
            "label": save(tmp_path / "inst.nii.gz", instances, affine),
        },
        {
            "image": save(tmp_path / "grey.nii.gz", grey, affine),
            "label": save(tmp_path / "inst.nii.gz", instances, affine),
        },
    ]
    # the three-channel scheme (an instance task's `auto` is `nuclei`, tested below)
    plans = plan("nuclei", cases, kind="instance_segmentation", normalisation="rgb")
    assert plans["n_channels"] == 3
    assert plans["normalisation"] == {"scheme": "rgb"}
    assert plans["classes"] == ["background", "interior", "boundary"]
    assert plans["target_spacing"] == [1.0, 1.0]
    assert plans["network"]["out_channels"] == 3 and plans["network"]["in_channels"] == 3
    out, lab, meta = preprocess_case(cases[0]["image"], cases[0]["label"], plans)
    assert out.shape == (3, 48, 40) and lab.shape == (1, 48, 40)
    np.testing.assert_allclose(out.mean(axis=(1, 2)), 0.0, atol=1e-5)
    np.testing.assert_allclose(out.std(axis=(1, 2)), 1.0, atol=1e-4)
    # Touching nuclei 1 and 2 are separated by boundary pixels; interiors stay apart.
    assert set(np.unique(lab)) == {0, 1, 2}
    assert np.all(lab[0, 14:16, 6:14] == 2)
    assert lab[0, 10, 10] == 1 and lab[0, 0, 0] == 0
    # A grey tile in an RGB cohort: the same grey in all three channels.
    grey_out, _, _ = preprocess_case(cases[1]["image"], None, plans)
    assert grey_out.shape == (3, 48, 40)
    np.testing.assert_array_equal(grey_out[0], grey_out[2])
    samples = train_transforms(plans, samples_per_image=3, **AUGMENTATION)(
        {"image": out, "label": lab}
    )
    assert len(samples) == 3
    # touching_class: a fourth class where the two nuclei meet, the rest as before.
    four = plan(
        "nuclei", cases, kind="instance_segmentation", touching_class=True, normalisation="rgb"
    )
    assert four["classes"] == ["background", "interior", "boundary", "touching"]
    assert four["network"]["out_channels"] == 4
    _, lab4, _ = preprocess_case(cases[0]["image"], cases[0]["label"], four)
    assert set(np.unique(lab4)) == {0, 1, 2, 3}
    assert np.all(lab4[0, 14:16, 6:14] == 3)
    np.testing.assert_array_equal(lab4 == 1, lab == 1)
    np.testing.assert_array_equal(lab4 > 0, lab > 0)
    for s in samples:
        assert tuple(s["image"].shape) == (3, *plans["patch_size"])
        assert tuple(s["label"].shape) == (1, *plans["patch_size"])
        assert set(np.unique(np.asarray(s["label"]))) <= {0, 1, 2}


def test_scale_range_sets_the_affine_zoom():
    # A 10x10 square in a 64x64 tile, the patch the whole tile: the affine (30 % of draws)
    # multiplies its area by 1/f^2 for a MONAI scale factor f (> 1 shrinks the content).
    plans = {
        "dims": 2,
        "patch_size": [64, 64],
        "normalisation": {"scheme": "zscore"},
        "target_spacing": [1.0, 1.0],
    }
    image = np.zeros((1, 64, 64), np.float32)
    label = np.zeros((1, 64, 64), np.uint8)
    label[0, 27:37, 27:37] = 1
    image[label > 0] = 1.0

    def areas(scale_range):
        t = train_transforms(
            plans, samples_per_image=1, **{**AUGMENTATION, "scale_range": scale_range}
        )
        t.set_random_state(seed=0)
        return [
            int(np.asarray(t({"image": image, "label": label})[0]["label"]).sum())
            for _ in range(60)
        ]

    shrunk, grown = areas([2.0, 2.0]), areas([0.5, 0.5])
    assert any(20 <= a <= 35 for a in shrunk) and max(shrunk) < 200  # 100 / 4
    assert any(380 <= a <= 460 for a in grown) and min(grown) > 80  # 100 * 4
    with pytest.raises(ValueError, match="scale_range"):
        train_transforms(plans, samples_per_image=2, **{**AUGMENTATION, "scale_range": [1.2, 0.8]})


def test_bad_inputs_name_the_file(tmp_path):
    cases = mr_cohort(tmp_path, [(1.0, 1.0, 3.0)])
    other = save(tmp_path / "other.nii.gz", np.zeros((5, 5, 5), np.uint8), np.eye(4))
    with pytest.raises(SegmentationInputError, match="other.nii.gz: label grid"):
        fingerprint([{"image": cases[0]["image"], "label": other}])
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(b"not a nifti")
    with pytest.raises(SegmentationInputError, match="broken.nii.gz: not a readable NIfTI"):
        fingerprint([{"image": str(broken), "label": None}])


def test_nuclei_scheme_one_bright_channel_rescaled_to_the_target_diameter(tmp_path):
    """Light-background tile with 10-pixel nuclei, target 20: one channel with nuclei
    bright, twice the size, the boundary band one pixel on the new grid, and the way back."""
    from medcnn.inference.segmentation import to_original_grid

    size = 60
    rows, cols = np.mgrid[:size, :size]
    instances = np.zeros((size, size, 1), np.int32)
    for k, (r0, c0) in enumerate([(12, 12), (12, 40), (40, 12), (40, 40), (26, 26)], start=1):
        instances[(rows - r0) ** 2 + (cols - c0) ** 2 <= 25, 0] = k  # diameter ~10
    grey = np.full((size, size, 1), 215, np.uint8)
    grey[instances > 0] = 60
    affine = np.diag([-1.0, -1.0, 1.0, 1.0])
    case = {
        "image": save(tmp_path / "bf.nii.gz", grey, affine),
        "label": save(tmp_path / "inst.nii.gz", instances, affine),
    }
    plans = plan(
        "nuclei", [case], kind="instance_segmentation", touching_class=True, nucleus_diameter=20
    )
    assert plans["normalisation"] == {"scheme": "nuclei"}
    assert plans["n_channels"] == 1 and plans["network"]["in_channels"] == 1
    assert plans["rescale"] == {"nucleus_diameter": 20.0}
    assert plans["nuclei_profile"]["types"] == {"fluorescence": 0, "colour": 0, "light_grey": 1}
    assert plans["nuclei_profile"]["diameter_median"] == pytest.approx(10.0, rel=0.15)
    image, label, meta = preprocess_case(case["image"], case["label"], plans)
    factor = meta["nuclei"]["scale_factor"]
    assert meta["nuclei"]["diameter_source"] == "reference"
    assert meta["nuclei"]["inverted"] is True and meta["nuclei"]["type"] == "light_grey"
    assert factor == pytest.approx(2.0, rel=0.15)
    assert image.shape == (1, round(size * factor), round(size * factor))
    assert label.shape == image.shape
    # nuclei bright (about 1), background about 0, after the inversion
    assert np.median(image[0][label[0] == 1]) == pytest.approx(1.0, abs=0.05)
    assert np.median(image[0][label[0] == 0]) == pytest.approx(0.0, abs=0.05)
    # the boundary band is one pixel wide on the resized grid: interior + boundary of a
    # nucleus are its resized area, the boundary about its perimeter
    nucleus = (label[0] > 0).sum() / 5
    assert (label[0] == 2).sum() / 5 == pytest.approx(np.pi * 2 * np.sqrt(nucleus / np.pi), rel=0.3)
    # without a label the diameter is estimated from the image, to the same scale
    unlabelled, _, meta_u = preprocess_case(case["image"], None, plans)
    assert meta_u["nuclei"]["diameter_source"] == "estimate"
    assert meta_u["nuclei"]["scale_factor"] == pytest.approx(factor, rel=0.15)
    # a given diameter wins; the way back lands on the ingest grid exactly
    given, _, meta_g = preprocess_case(case["image"], None, plans, diameter=5.0)
    assert meta_g["nuclei"]["scale_factor"] == 4.0 and given.shape == (1, 240, 240)
    back = to_original_grid((label[0] > 0).astype(np.uint8), meta, case["image"])
    assert back.shape == (size, size, 1)
    agree = (np.asarray(back.dataobj) > 0) == (instances > 0)
    assert agree.mean() > 0.98
