"""Nuclei intensity and scale handling (medcnn.transforms.nuclei), on synthetic images."""

from __future__ import annotations

import numpy as np
import pytest

from medcnn.planning.quality import check_nuclei_image
from medcnn.postprocess.instances import median_diameter
from medcnn.transforms.nuclei import (
    estimate_diameter,
    image_profile,
    image_type,
    nuclei_grey,
    scale_factor,
    training_profile,
)


def _disks(size: int = 128, radius: float = 6.0, seed: int = 0) -> np.ndarray:
    """An instance image of separate disks of ``radius`` on a grid with jitter."""
    rng = np.random.default_rng(seed)
    labels = np.zeros((size, size), np.int32)
    rows, cols = np.mgrid[:size, :size]
    k = 0
    step = int(4 * radius)
    for r0 in range(step // 2, size - step // 2, step):
        for c0 in range(step // 2, size - step // 2, step):
            k += 1
            dr, dc = rng.uniform(-2, 2, 2)
            labels[(rows - r0 - dr) ** 2 + (cols - c0 - dc) ** 2 <= radius**2] = k
    return labels


def _fluorescence(labels: np.ndarray, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    grey = 8 + 150 * (labels > 0) + rng.normal(0, 3, labels.shape)
    return grey.astype(np.float32)[None]


def _light_grey(labels: np.ndarray, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (220 - 120 * (labels > 0) + rng.normal(0, 3, labels.shape)).astype(np.float32)[None]


def _colour(labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """Purple nuclei on a pink field (H&E-like)."""
    rng = np.random.default_rng(seed)
    pink, purple = np.array([230, 170, 200.0]), np.array([90, 50, 140.0])
    image = np.where((labels > 0)[..., None], purple, pink) + rng.normal(0, 3, labels.shape + (3,))
    return np.moveaxis(image.astype(np.float32), -1, 0)


def test_image_type_is_found_from_the_pixels():
    labels = _disks()
    assert image_type(_fluorescence(labels)) == "fluorescence"
    assert image_type(_light_grey(labels)) == "light_grey"
    assert image_type(_colour(labels)) == "colour"
    # a grey image stored as three equal channels is still grey
    assert image_type(np.repeat(_fluorescence(labels), 3, axis=0)) == "fluorescence"


@pytest.mark.parametrize("make", [_fluorescence, _light_grey, _colour])
def test_nuclei_grey_makes_nuclei_bright_at_one_and_background_zero(make):
    labels = _disks()
    grey, stats = nuclei_grey(make(labels))
    assert grey.shape == (1, *labels.shape)
    assert np.median(grey[0][labels > 0]) == pytest.approx(1.0, abs=0.05)
    assert np.median(grey[0][labels == 0]) == pytest.approx(0.0, abs=0.05)
    assert stats["inverted"] is (make is not _fluorescence)


@pytest.mark.parametrize("radius", [4.0, 8.0, 14.0])
def test_diameter_estimate_and_reference_diameter_agree_with_the_disks(radius):
    labels = _disks(size=192, radius=radius)
    true = 2 * radius
    assert median_diameter(labels) == pytest.approx(true, rel=0.1)
    assert estimate_diameter(_fluorescence(labels)) == pytest.approx(true, rel=0.15)
    assert estimate_diameter(_colour(labels)) == pytest.approx(true, rel=0.15)


def _textured_colour(labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """Large H&E-like nuclei with chromatin texture: pale purple with dark clumps, on pink."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    pink, purple = np.array([225, 175, 205.0]), np.array([105, 60, 150.0])
    speckle = ndimage.gaussian_filter(rng.normal(0, 1, labels.shape), 1.5)
    clumps = (speckle > 0.4 * speckle.std()) & (labels > 0)
    image = np.where((labels > 0)[..., None], 0.35 * purple + 0.65 * pink, pink)
    image = np.where(clumps[..., None], purple, image) + rng.normal(0, 3, labels.shape + (3,))
    return np.moveaxis(image.astype(np.float32), -1, 0)


def test_colour_nuclei_with_chromatin_texture_are_sized_from_scale_space():
    """Otsu's components of a textured 40-px nucleus are its chromatin pieces; the blob scale
    (what estimate_diameter uses for colour images) finds the nucleus."""
    from medcnn.transforms.nuclei import blob_diameter, component_diameter

    labels = _disks(size=256, radius=20.0, seed=1)
    image = _textured_colour(labels, seed=0)
    true = median_diameter(labels)
    assert image_type(image) == "colour"
    assert component_diameter(image) < 0.6 * true
    assert estimate_diameter(image) == blob_diameter(image)
    assert estimate_diameter(image) == pytest.approx(true, rel=0.2)
    # preprocessing estimates on the one grey channel, told the image's type
    grey, stats = nuclei_grey(image)
    assert stats["type"] == "colour"
    assert estimate_diameter(grey, stats["type"]) == pytest.approx(true, rel=0.2)
    assert estimate_diameter(grey) == pytest.approx(component_diameter(image), rel=0.05)


def test_median_diameter_needs_enough_instances():
    assert median_diameter(np.zeros((8, 8), np.int32)) is None
    labels = _disks(size=64, radius=5)
    assert median_diameter(labels, min_instances=1000) is None


def test_scale_factor_is_bounded_and_neutral_without_a_diameter():
    assert scale_factor(10.0, 20.0) == 2.0
    assert scale_factor(None, 20.0) == 1.0
    assert scale_factor(10.0, None) == 1.0
    assert scale_factor(1.0, 20.0) == 5.0  # clipped
    assert scale_factor(400.0, 20.0) == 0.2


def test_an_image_type_training_hardly_saw_is_flagged():
    labels = _disks()
    train = [image_profile(_fluorescence(labels, s), 12.0) for s in range(30)]
    train.append(image_profile(_light_grey(labels), 12.0))
    profile = training_profile(train)
    assert profile["types"] == {"fluorescence": 30, "colour": 0, "light_grey": 1}
    assert check_nuclei_image(profile, image_profile(_fluorescence(labels, 99), 12.0)) == []
    flags = check_nuclei_image(profile, image_profile(_light_grey(labels, 5), 12.0))
    assert flags == ["image type light-grey: 1 of the 31 training images were of this kind"]
    # nuclei four times the training size
    size_flags = check_nuclei_image(profile, image_profile(_fluorescence(labels, 7), 48.0))
    assert len(size_flags) == 1 and "48 px" in size_flags[0]
    # an older bundle without a profile flags nothing
    assert check_nuclei_image(None, image_profile(_light_grey(labels), 12.0)) == []


def test_nuclei_on_bright_tissue_are_sized_from_scale_space():
    """Where Otsu separates a bright tissue (an embryo, a cell sheet) from a dark background
    instead of the nuclei from the tissue, its mask is one large region and the components
    left are specks; the estimate is the blob scale, which finds the nuclei."""
    from scipy import ndimage

    from medcnn.transforms.nuclei import blob_diameter, component_diameter

    rng = np.random.default_rng(0)
    labels = _disks(size=256, radius=7.0, seed=2)
    rows, cols = np.mgrid[:256, :256]
    tissue = ((rows - 128) / 110.0) ** 2 + ((cols - 128) / 75.0) ** 2 <= 1.0
    labels[~tissue] = 0
    # debris in the background: 5 x 5 specks, large enough to pass as components
    seeds = (rng.random(labels.shape) < 0.001) & ~tissue
    specks = ndimage.binary_dilation(seeds, np.ones((5, 5), bool))
    grey = 5 + 60 * tissue + 40 * (labels > 0) + 60 * specks
    image = (grey + rng.normal(0, 3, labels.shape)).astype(np.float32)[None]
    true = median_diameter(labels)
    assert image_type(image) == "fluorescence"
    assert component_diameter(image) is None
    assert estimate_diameter(image) == blob_diameter(image)
    assert estimate_diameter(image) == pytest.approx(true, rel=0.2)


def test_a_blank_grey_image_has_no_diameter_estimate():
    """Nothing to size: no estimate, so the image is not resized (not blown up to the blob
    scale of its noise)."""
    assert estimate_diameter(np.full((1, 64, 64), 7.0, np.float32)) is None
