"""Prediction back on the ingest grid: exact label round trips, fold ensembles, instances."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch

from medcnn.inference.segmentation import (
    load_models,
    predict_array,
    predict_labels,
    predict_probabilities,
    to_original_grid,
)
from medcnn.models.bundle import save_bundle
from medcnn.models.factory import build_network
from medcnn.transforms.segmentation import preprocess_case
from medcnn.transforms.spatial import SegmentationInputError
from tests.planning.settings import plan


def oblique_affine() -> np.ndarray:
    """Anisotropic (0.9 x 1.3 x 3.5 mm), rotated 20 degrees about z and 10 about x, with
    i running right-to-left and k foot-to-head flipped: nothing like RAS."""
    a, b = np.deg2rad(20.0), np.deg2rad(10.0)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    # Array axes (i, j, k) point along world (-x, z, -y): permuted and flipped.
    axes = np.array([[-1, 0, 0], [0, 0, -1], [0, 1, 0]], dtype=float)
    affine = np.eye(4)
    affine[:3, :3] = rz @ rx @ axes @ np.diag([0.9, 3.5, 1.3])
    affine[:3, 3] = [12.0, -40.0, 7.5]
    return affine


def labelled_volume(tmp_path, shape=(30, 11, 24)):
    rng = np.random.default_rng(0)
    label = np.zeros(shape, np.uint8)
    label[5:20, 2:8, 4:15] = 1
    label[22:27, 6:10, 16:22] = 2
    label[rng.random(shape) < 0.02] = 2  # isolated voxels: any off-by-one shows
    image = (rng.normal(100.0, 10.0, shape) + 50.0 * label).astype(np.float32)
    affine = oblique_affine()
    for name, data in (("image", image), ("label", label)):
        img = nib.Nifti1Image(data, affine)
        img.set_sform(affine, code=1)
        img.set_qform(affine, code=1)
        nib.save(img, tmp_path / f"{name}.nii.gz")
    return str(tmp_path / "image.nii.gz"), str(tmp_path / "label.nii.gz"), label, affine


def test_round_trip_of_labels_is_exact_on_an_oblique_flipped_anisotropic_grid(tmp_path):
    image_path, label_path, label, affine = labelled_volume(tmp_path)
    case = {"image": image_path, "label": label_path}
    plans = plan("t", [case], kind="segmentation", classes=["a", "b"], modalities=["MR"])
    image, pre_label, meta = preprocess_case(image_path, label_path, plans)
    # Canonical order: i runs to -x (flipped to R), j to +z (becomes the third axis, S),
    # k to -y (flipped to A, becomes the second); spacing its own (the cohort median).
    assert plans["target_spacing"] == pytest.approx([0.9, 1.3, 3.5])
    assert image.shape == (1, 30, 24, 11) and pre_label.shape == (1, 30, 24, 11)
    assert nib.aff2axcodes(np.array(meta["affine"])) == ("R", "A", "S")
    np.testing.assert_array_equal(pre_label[0], np.flip(label, axis=(0, 2)).transpose(0, 2, 1))
    back = to_original_grid(pre_label[0], meta, image_path)
    np.testing.assert_array_equal(np.asarray(back.dataobj), label)
    np.testing.assert_allclose(back.affine, affine, atol=1e-6)
    assert back.get_data_dtype() == np.uint8
    # The preprocessed grid's world positions are the original voxels' positions.
    ijk = np.array([3, 4, 5, 1.0])
    src = np.linalg.inv(affine) @ (np.array(meta["affine"]) @ ijk)
    assert pre_label[0][3, 4, 5] == label[tuple(np.round(src[:3]).astype(int))]


def test_round_trip_through_a_coarser_spacing(tmp_path):
    image_path, label_path, label, _ = labelled_volume(tmp_path, shape=(40, 12, 40))
    label[label == 2] = 0
    label[30:38, 3:9, 25:35] = 2
    nib.save(nib.Nifti1Image(label, nib.load(label_path).affine), label_path)
    case = {"image": image_path, "label": label_path}
    plans = plan("t", [case], classes=["a", "b"], target_spacing=[1.8, 2.6, 3.5])
    _, pre_label, meta = preprocess_case(image_path, label_path, plans)
    assert pre_label.shape == (1, 20, 20, 12)
    np.testing.assert_allclose(meta["spacing"], [1.8, 2.6, 3.5])
    back = np.asarray(to_original_grid(pre_label[0], meta, image_path).dataobj)
    assert back.shape == label.shape
    for c in (1, 2):
        overlap = 2 * ((back == c) & (label == c)).sum() / ((back == c).sum() + (label == c).sum())
        assert overlap > 0.85, c
    # Probabilities go back linearly, channels last.
    onehot = np.stack([pre_label[0] == c for c in range(3)]).astype(np.float32)
    prob = to_original_grid(onehot, meta, image_path, mode="linear")
    assert prob.shape == (*label.shape, 3)
    np.testing.assert_allclose(np.asarray(prob.dataobj).sum(-1), 1.0, atol=1e-5)


def test_wrong_reference_is_refused(tmp_path):
    image_path, label_path, _, _ = labelled_volume(tmp_path)
    # the label's values 1 and 2: two classes
    case = {"image": image_path, "label": label_path}
    plans = plan("t", [case], classes=["class1", "class2"])
    _, pre_label, meta = preprocess_case(image_path, label_path, plans)
    other = nib.Nifti1Image(np.zeros((30, 11, 24), np.float32), np.eye(4))
    with pytest.raises(SegmentationInputError, match="does not match"):
        to_original_grid(pre_label[0], meta, other)


def test_fold_ensemble_and_instances_on_the_2d_grid(tmp_path):
    instances = np.zeros((40, 32, 1), np.int32)
    instances[4:14, 4:14] = 1
    instances[14:24, 4:14] = 2
    image = np.where(instances > 0, 200, 10).astype(np.uint8)
    affine = np.diag([-0.5, -0.5, 1.0, 1.0])
    nib.save(nib.Nifti1Image(image, affine), tmp_path / "tile.nii.gz")
    nib.save(nib.Nifti1Image(instances, affine), tmp_path / "inst.nii.gz")
    case = {"image": str(tmp_path / "tile.nii.gz"), "label": str(tmp_path / "inst.nii.gz")}
    plans = plan("nuclei", [case], kind="instance_segmentation")
    assert plans["patch_size"] == [40, 32]  # three poolings: multiples of 8
    plans["network"]["channels"] = [4, 8, 16, 32]  # small: the test is about the plumbing
    torch.manual_seed(0)
    folders = []
    for k in range(2):
        model = build_network(**plans["network"]).eval()
        folders.append(tmp_path / f"fold{k}")
        save_bundle(folders[-1], model, {"name": "t", "network": plans["network"], "plans": plans})
    models, description = load_models(folders)
    assert description["plans"]["classes"] == ["background", "interior", "boundary"]
    pre, _, _ = preprocess_case(case["image"], None, plans)
    mean = predict_array(models, plans, pre)
    single = [predict_array([m], plans, pre) for m in models]
    np.testing.assert_allclose(mean, (single[0] + single[1]) / 2, atol=1e-5)
    np.testing.assert_allclose(mean.sum(0), 1.0, atol=1e-5)
    label_img, prob, meta = predict_labels(models, plans, case["image"], flips=True)
    assert label_img.shape == (40, 32, 1)
    np.testing.assert_allclose(label_img.affine, affine)
    assert label_img.get_data_dtype() == np.int32
    assert prob.shape == (3, 40, 32)


def test_postprocessing_is_chosen_on_validation_images():
    from medcnn.inference.segmentation import choose_postprocessing
    from medcnn.postprocess.instances import target_from_instances

    instances = np.zeros((40, 40), np.int64)
    instances[5:15, 5:15] = 1
    instances[15:25, 5:15] = 2  # touches 1
    instances[28:36, 20:34] = 3
    target = target_from_instances(instances)
    onehot = np.stack([target == c for c in range(3)]).astype(np.float32)
    # Under-confident interiors (0.45): only an interior threshold below that finds markers.
    prob = onehot.copy()
    prob[1] = np.where(target == 1, 0.45, 0.0)
    prob[2] = np.where(target == 1, 0.55, prob[2])
    grid = {"interior_threshold": [0.5, 0.4], "foreground_threshold": [0.5]}
    settings, score = choose_postprocessing([prob], [instances], grid)
    assert settings == {"interior_threshold": 0.4, "foreground_threshold": 0.5}
    assert score == pytest.approx(1.0)


def test_each_score_gets_its_own_best_watershed_from_one_pass():
    """Per score the same choice as choose_postprocessing (one watershed per setting for all
    scores); a faint nucleus needs the lowest interior threshold, which is named as an edge."""
    from medcnn.inference.segmentation import (
        at_grid_edge,
        choose_postprocessing,
        choose_postprocessing_by,
    )
    from medcnn.postprocess.instances import target_from_instances

    instances = np.zeros((40, 40), np.int64)
    instances[5:15, 5:15] = 1
    instances[15:25, 5:15] = 2
    instances[28:36, 20:34] = 3
    instances[30:33, 2:5] = 4  # a faint small nucleus
    target = target_from_instances(instances)
    onehot = np.stack([target == c for c in range(3)]).astype(np.float32)
    prob = onehot.copy()
    prob[1] = np.where(target == 1, 0.7, 0.0)
    prob[1][instances == 4] = 0.35
    prob[0] = 1.0 - prob[1] - prob[2]
    grid = {"interior_threshold": [0.3, 0.5, 0.8], "foreground_threshold": [0.3, 0.5]}
    chosen = choose_postprocessing_by([prob], [instances], grid, ("aji", "pq", "f1"))
    assert set(chosen) == {"aji", "pq", "f1"}
    for score, (settings, value) in chosen.items():
        assert (settings, value) == choose_postprocessing([prob], [instances], grid, score)
    # only an interior threshold below 0.35 marks the faint nucleus: all four found
    assert chosen["f1"][0]["interior_threshold"] == 0.3
    assert chosen["f1"][1] == pytest.approx(1.0)
    assert at_grid_edge(chosen["f1"][0], grid) == [
        "interior_threshold 0.3 (the smallest tried)",
        "foreground_threshold 0.3 (the smallest tried)",
    ]
    assert at_grid_edge({"interior_threshold": 0.5}, grid) == []
    assert at_grid_edge({"interior_threshold": 0.8}, {"interior_threshold": [0.8]}) == []


class _Oracle(torch.nn.Module):
    """Interior where the normalised nuclei image is above 0.5 (a perfect network for
    well-separated bright disks), background elsewhere; never boundary."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([(0.5 - x) * 20, (x - 0.5) * 20, torch.full_like(x, -20.0)], dim=1)


def _disk_tile(tmp_path):
    """A 96 x 96 tile of five bright 8-px-radius disks (LPS-flipped affine), its instances,
    the case, instance plans at 20-px nuclei and the disks' true diameter."""
    size, radius = 96, 8
    rows, cols = np.mgrid[:size, :size]
    instances = np.zeros((size, size, 1), np.int32)
    for k, (r0, c0) in enumerate([(20, 20), (20, 70), (70, 20), (70, 70), (45, 45)], start=1):
        instances[(rows - r0) ** 2 + (cols - c0) ** 2 <= radius**2, 0] = k
    image = np.where(instances > 0, 180, 12).astype(np.uint8)
    affine = np.diag([-1.0, -1.0, 1.0, 1.0])
    nib.save(nib.Nifti1Image(image, affine), tmp_path / "tile.nii.gz")
    nib.save(nib.Nifti1Image(instances, affine), tmp_path / "inst.nii.gz")
    case = {"image": str(tmp_path / "tile.nii.gz"), "label": str(tmp_path / "inst.nii.gz")}
    plans = plan("nuclei", [case], kind="instance_segmentation", nucleus_diameter=20)
    true = 2 * np.sqrt((instances == 1).sum() / np.pi)
    return size, instances, case, plans, true


def test_nuclei_are_predicted_at_the_scale_of_the_first_pass(tmp_path, monkeypatch):
    """Cellpose-style sizing: a wrong Otsu estimate (40 px) is corrected by the first pass's
    nuclei (16 px), predicted again at that scale, and the instances land on the image's own
    grid."""
    import medcnn.transforms.segmentation as seg

    size, instances, case, plans, true = _disk_tile(tmp_path)
    # a good estimate: one pass at its scale
    prob, _, meta = predict_probabilities([_Oracle()], plans, case["image"])
    assert meta["nuclei"]["diameter_source"] == "estimate"
    assert meta["nuclei"]["diameter"] == pytest.approx(true, rel=0.1)
    assert prob.shape == (3, size, size)
    # a wrong estimate: corrected by the first pass
    monkeypatch.setattr(seg, "estimate_diameter", lambda *_: 40.0)
    label_img, _, meta = predict_labels([_Oracle()], plans, case["image"])
    assert meta["nuclei"]["diameter_source"] == "first_pass"
    assert meta["nuclei"]["estimated_diameter"] == 40.0
    assert meta["nuclei"]["diameter"] == pytest.approx(true, rel=0.1)
    assert meta["nuclei"]["scale_factor"] == pytest.approx(20 / true, rel=0.1)
    labels = np.asarray(label_img.dataobj)[..., 0]
    assert labels.shape == (size, size) and labels.max() == 5
    agree = (labels > 0) == (instances[..., 0] > 0)
    assert agree.mean() > 0.98
    # a given diameter: no first pass
    _, _, meta = predict_probabilities([_Oracle()], plans, case["image"], diameter=10.0)
    assert meta["nuclei"]["diameter_source"] == "given" and meta["nuclei"]["scale_factor"] == 2.0


def test_a_first_pass_far_below_the_estimate_is_not_believed(tmp_path, monkeypatch):
    """A first pass whose nuclei are more than FIRST_PASS_RANGE times smaller than the
    estimate (large textured nuclei broken into pieces) does not rescale the image: the
    estimate is kept and the first pass's diameter recorded."""
    import medcnn.inference.segmentation as inference
    import medcnn.transforms.segmentation as seg

    size, instances, case, plans, true = _disk_tile(tmp_path)
    estimate = true * (inference.FIRST_PASS_RANGE + 0.5)
    monkeypatch.setattr(seg, "estimate_diameter", lambda *_: estimate)
    _, _, meta = predict_probabilities([_Oracle()], plans, case["image"])
    assert meta["nuclei"]["diameter_source"] == "estimate"
    assert meta["nuclei"]["diameter"] == pytest.approx(estimate)
    assert meta["nuclei"]["first_pass_diameter"] == pytest.approx(true, rel=0.1)
    # within the range the first pass still corrects the estimate (as above)
    monkeypatch.setattr(seg, "estimate_diameter", lambda *_: true * 2.5)
    _, _, meta = predict_probabilities([_Oracle()], plans, case["image"])
    assert meta["nuclei"]["diameter_source"] == "first_pass"
    assert meta["nuclei"]["diameter"] == pytest.approx(true, rel=0.1)


def test_a_colour_image_is_predicted_once_at_its_estimate(tmp_path, monkeypatch):
    """Colour images skip the first pass (it measures pieces of textured nuclei): one pass at
    the estimate, even a wrong one that the first pass would correct on a grey image."""
    import medcnn.inference.segmentation as inference
    import medcnn.transforms.segmentation as seg

    size, instances, case, plans, true = _disk_tile(tmp_path)
    monkeypatch.setattr(seg, "estimate_diameter", lambda *_: 40.0)
    passes = []
    predict_array = inference.predict_array

    def counted(*args, **kwargs):
        passes.append(args[4])
        return predict_array(*args, **kwargs)

    monkeypatch.setattr(inference, "predict_array", counted)
    _, _, meta = predict_probabilities([_Oracle()], plans, case["image"])
    assert meta["nuclei"]["type"] == "fluorescence"
    assert meta["nuclei"]["diameter_source"] == "first_pass" and len(passes) == 2
    passes.clear()
    monkeypatch.setattr(inference, "FIRST_PASS_TYPES", ("light_grey",))
    _, _, meta = predict_probabilities([_Oracle()], plans, case["image"])
    assert meta["nuclei"]["diameter_source"] == "estimate" and len(passes) == 1
    assert meta["nuclei"]["diameter"] == 40.0
    assert meta["nuclei"]["scale_factor"] == pytest.approx(20 / 40.0)
    assert "colour" not in inference.FIRST_PASS_TYPES
    # with mirroring, the one pass at the estimate is the mirrored one
    passes.clear()
    _, _, meta = predict_probabilities([_Oracle()], plans, case["image"], flips=True)
    assert passes == [True] and meta["nuclei"]["diameter"] == 40.0


def test_square_2d_mirroring_averages_the_eight_symmetries():
    """With a square 2D patch (trained with quarter turns) test-time augmentation covers the
    whole symmetry group of the square: an orientation-dependent network's averaged output
    turns and mirrors exactly with its input; a 3D or non-square patch mirrors per axis."""
    from medcnn.inference.segmentation import sliding_probabilities

    torch.manual_seed(0)
    model = torch.nn.Conv2d(1, 3, 5, padding=2).eval()  # no symmetry of its own
    image = torch.rand(1, 32, 32)

    def tta(x: torch.Tensor) -> torch.Tensor:
        return sliding_probabilities(model, x, [16, 16], torch.device("cpu"), flips=True)

    base = tta(image)
    plain = sliding_probabilities(model, image, [16, 16], torch.device("cpu"))
    assert (base - plain).abs().max() > 1e-3  # the augmentation changes the output
    np.testing.assert_allclose(tta(image.transpose(1, 2)), base.transpose(1, 2), atol=1e-5)
    np.testing.assert_allclose(tta(image.rot90(1, (1, 2))), base.rot90(1, (1, 2)), atol=1e-5)
    np.testing.assert_allclose(tta(image.flip(2)), base.flip(2), atol=1e-5)
    # a non-square patch: mirrors only, so a transposed input is not equivariant
    rect = sliding_probabilities(model, image, [16, 8], torch.device("cpu"), flips=True)
    turned = sliding_probabilities(
        model, image.transpose(1, 2), [16, 8], torch.device("cpu"), flips=True
    )
    assert (turned - rect.transpose(1, 2)).abs().max() > 1e-3
