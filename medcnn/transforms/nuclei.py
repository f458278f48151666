"""Microscopy nuclei: one intensity convention and one scale for every kind of image.

Nuclei images come as dark-field fluorescence (bright nuclei on black), brightfield grey
(dark nuclei on a light field) and colour histology or stained brightfield (purple nuclei on a
pink or white field). A network trained mostly on one kind fails on the others, and nuclei of
one kind differ tenfold in size between microscopes. As the anchors of the field do it:

- *intensity* (2018 Data Science Bowl winners): a grey image (the mean of the colour
  channels), inverted when the field is light, so nuclei are always bright on dark; then
  scaled so that the typical background is 0 and the typical nucleus 1 (Otsu's two classes),
  whatever the microscope's exposure or bit depth (:func:`nuclei_grey`);
- *scale* (Cellpose): each image is resized so that its typical nucleus has the plans'
  target diameter. For training the diameter comes from the reference instances
  (:func:`medcnn.postprocess.instances.median_diameter`); for a new image first from a quick
  estimate (:func:`estimate_diameter`: Otsu + components, or for colour images and grey
  ones whose Otsu mask is mostly tissue the characteristic scale of its blobs,
  :func:`blob_diameter`), then from the instances of the
  model's own first pass (:mod:`medcnn.inference.segmentation`).

:func:`image_type` names the kind of image from its pixels (``fluorescence``, ``colour``,
``light_grey``): the benchmark stratifies its folds by it, and the plans' profile of the
training images lets prediction flag an image of a kind (or an intensity or size) training
hardly saw.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy import ndimage

#: The kinds of nuclei image :func:`image_type` tells apart.
IMAGE_TYPES = ("fluorescence", "colour", "light_grey")
#: Mean channel spread (max - min over R, G, B) relative to the image's robust range above
#: which an image counts as colour.
COLOUR_SPREAD = 0.04
#: Smallest Otsu component (pixels) that counts in the diameter estimate: noise below it.
MIN_COMPONENT = 16
#: Largest share of Otsu's mask that :func:`component_diameter` accepts in components of 5 %
#: of the image or more. Above it, Otsu has separated tissue (an embryo, a cell sheet) from
#: the dark background rather than nuclei from the tissue, the components left are specks,
#: and :func:`estimate_diameter` uses the scale-space estimate instead.
MAX_TISSUE_FRACTION = 0.5
#: Range of the scale factor (target / estimated diameter).
SCALE_LIMITS = (0.2, 5.0)


def _channels(image: np.ndarray) -> np.ndarray:
    """``(C, H, W)`` float32 (C 1 or 3; a fourth, alpha, channel is dropped)."""
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 2:
        image = image[None]
    if image.ndim != 3:
        raise ValueError(f"a nuclei image must be (C, H, W) or (H, W), not shape {image.shape}")
    return image[:3]


def _otsu(values: np.ndarray) -> float:
    from skimage.filters import threshold_otsu

    if values.size == 0 or float(values.max()) == float(values.min()):
        return float(values.max()) if values.size else 0.0
    return float(threshold_otsu(values))


def light_background(grey: np.ndarray) -> bool:
    """True when the field is light: the median (the background in all but the densest
    images) lies in the upper half of the range between the 0.1th and 99.9th percentiles."""
    low, median, high = np.percentile(grey, [0.1, 50.0, 99.9])
    return bool(median > 0.5 * (low + high))


def colour_spread(image: np.ndarray) -> float:
    """Mean spread of the colour channels relative to the robust grey range (0 for grey)."""
    channels = _channels(image)
    if channels.shape[0] < 3:
        return 0.0
    grey = channels.mean(axis=0)
    low, high = np.percentile(grey, [1.0, 99.0])
    spread = (channels.max(axis=0) - channels.min(axis=0)).mean()
    return float(spread / max(high - low, 1e-6))


def image_type(image: np.ndarray) -> str:
    """``colour`` (stained histology or brightfield), ``light_grey`` (grey brightfield: dark
    nuclei on a light field) or ``fluorescence`` (bright nuclei on a dark field), from the
    pixels of a ``(C, H, W)`` or ``(H, W)`` image."""
    channels = _channels(image)
    if colour_spread(channels) > COLOUR_SPREAD:
        return "colour"
    return "light_grey" if light_background(channels.mean(axis=0)) else "fluorescence"


def polarity_grey(image: np.ndarray) -> tuple[np.ndarray, bool]:
    """The grey image with nuclei bright: the channel mean, negated when the field is light.

    Returns:
        (float32 ``(H, W)``, whether it was inverted).
    """
    grey = _channels(image).mean(axis=0)
    inverted = light_background(grey)
    return (-grey if inverted else grey), inverted


def nuclei_grey(image: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
    """One normalised channel: :func:`polarity_grey`, then ``(x - b) / (f - b)`` with ``b``
    and ``f`` the medians of Otsu's background and nucleus sides (typical background 0,
    typical nucleus 1).

    Returns:
        (float32 ``(1, H, W)``, ``{"mean": [b], "std": [f - b], "inverted", "type"}``).
    """
    channels = _channels(image)
    grey, inverted = polarity_grey(channels)
    threshold = _otsu(grey.ravel())
    below, above = grey[grey <= threshold], grey[grey > threshold]
    background = float(np.median(below)) if below.size else float(grey.min())
    nucleus = float(np.median(above)) if above.size else float(grey.max())
    scale = max(nucleus - background, 1e-3 * max(float(np.ptp(grey)), 1e-6), 1e-6)
    out = ((grey - background) / scale).astype(np.float32)[None]
    stats = {
        "mean": [background],
        "std": [scale],
        "inverted": inverted,
        "type": image_type(channels),
    }
    return out, stats


def otsu_nuclei(grey: np.ndarray) -> np.ndarray:
    """Otsu's mask of a nuclei-bright grey image (:func:`polarity_grey`), 4-connected
    components labelled (int32)."""
    mask = grey > _otsu(grey.ravel())
    labels, _ = ndimage.label(mask, structure=ndimage.generate_binary_structure(2, 1))
    return labels.astype(np.int32)


def estimate_diameter(image: np.ndarray, kind: str | None = None) -> float | None:
    """Typical nucleus diameter in pixels of an unlabelled image (``kind``: its
    :func:`image_type` when the image given is already :func:`nuclei_grey`'s one channel).

    Grey images: from Otsu's mask of the nuclei-bright grey image (opened by one pixel
    against noise), the median equivalent diameter (``2 sqrt(area / pi)``) of its solid
    components (solidity above 0.85: single nuclei rather than clumps) of
    :data:`MIN_COMPONENT` pixels up to 5 % of the image. Colour images (histology,
    stained brightfield): :func:`blob_diameter`, because the chromatin texture of large
    stained nuclei breaks Otsu's mask into nucleolus-sized pieces (on the 21 colour images of
    DSB 2018's dev set the component estimate is off by more than 1.6x on 4, the blob scale
    on 1; on the grey ones the component estimate is the better of the two). A grey image
    whose Otsu mask is mostly tissue (:data:`MAX_TISSUE_FRACTION`: nuclei on a bright embryo
    or cell sheet) is sized by :func:`blob_diameter` too.

    Returns:
        The diameter, or None when no such component is found (a blank image).
    """
    if (kind or image_type(image)) == "colour":
        return blob_diameter(image)
    diameter, tissue = _components(image)
    return blob_diameter(image) if tissue else diameter


#: Blob scales (sigma, pixels) :func:`blob_diameter` tries: nuclei of about 4-70 px across.
BLOB_SIGMAS = tuple(float(s) for s in np.geomspace(1.5, 25.0, 24))


def blob_diameter(image: np.ndarray) -> float:
    """Characteristic nucleus diameter of an image from scale space (Lindeberg): the sigma at
    which the 99th percentile of the scale-normalised Laplacian of Gaussian
    (``-sigma^2 LoG``) of the normalised nuclei-bright grey image (:func:`nuclei_grey`,
    clipped to [-1, 3]) is largest, times ``2 sqrt(2)`` (the diameter of a disk whose centre
    responds most at that sigma). Texture inside a nucleus responds at small sigma, but less
    than the whole nucleus does at its own scale. Large sigmas are computed on the image
    block-averaged by up to ``sigma / 3`` (the scale-normalised response does not change).
    """
    from skimage.measure import block_reduce

    grey = np.clip(nuclei_grey(image)[0][0].astype(np.float32), -1.0, 3.0)
    reduced: dict[int, np.ndarray] = {1: grey}
    best, best_sigma = -np.inf, BLOB_SIGMAS[0]
    for sigma in BLOB_SIGMAS:
        f = max(1, min(int(sigma // 3), min(grey.shape) // 16 or 1))
        if f not in reduced:
            reduced[f] = block_reduce(grey, (f, f), np.mean)
        s = sigma / f
        response = float(np.percentile(-(s * s) * ndimage.gaussian_laplace(reduced[f], s), 99))
        if response > best:
            best, best_sigma = response, sigma
    return float(2.0 * np.sqrt(2.0) * best_sigma)


def component_diameter(image: np.ndarray) -> float | None:
    """The Otsu + components estimate of :func:`estimate_diameter` (grey images): None when
    no component qualifies, or when Otsu's mask is mostly tissue (:func:`_components`)."""
    return _components(image)[0]


def _components(image: np.ndarray) -> tuple[float | None, bool]:
    """(the Otsu + components diameter or None, whether the mask is mostly tissue: more than
    :data:`MAX_TISSUE_FRACTION` of it in components of 5 % of the image or more)."""
    from skimage.measure import regionprops

    grey, _ = polarity_grey(image)
    mask = ndimage.binary_opening(otsu_nuclei(grey) > 0)
    labels, n = ndimage.label(mask, structure=ndimage.generate_binary_structure(2, 1))
    if n == 0:
        return None, False
    regions = regionprops(labels)
    large = 0.05 * labels.size
    if sum(p.area for p in regions if p.area >= large) > MAX_TISSUE_FRACTION * mask.sum():
        return None, True
    props = [p for p in regions if MIN_COMPONENT <= p.area < large]
    if not props:
        return None, False
    area = np.array([p.area for p in props], dtype=np.float64)
    solid = np.array([p.solidity for p in props]) > 0.85
    chosen = area[solid] if solid.any() else area
    return float(np.median(2.0 * np.sqrt(chosen / np.pi))), False


def weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    """The value below which half of the total weight lies."""
    order = np.argsort(values)
    cumulative = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cumulative, 0.5 * cumulative[-1])])


def scale_factor(diameter: float | None, target: float | None) -> float:
    """Resize factor that brings ``diameter`` to ``target`` (1 without either), within
    :data:`SCALE_LIMITS`."""
    if not diameter or not target:
        return 1.0
    return float(np.clip(float(target) / float(diameter), *SCALE_LIMITS))


def image_profile(image: np.ndarray, diameter: float | None) -> dict[str, Any]:
    """What the training profile records of one image: its type, whether it was inverted,
    its nucleus diameter (px) and its raw robust grey range (1st/99th percentiles)."""
    channels = _channels(image)
    grey = channels.mean(axis=0)
    low, high = np.percentile(grey, [1.0, 99.0])
    return {
        "type": image_type(channels),
        "diameter": None if diameter is None else float(diameter),
        "p01": float(low),
        "p99": float(high),
    }


def training_profile(profiles: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The nuclei part of the plans' fingerprint: images per type, the nucleus diameters and
    the raw intensity range of the training images."""
    diameters = [float(p["diameter"]) for p in profiles if p.get("diameter")]
    return {
        "n_images": len(profiles),
        "types": {t: sum(p["type"] == t for p in profiles) for t in IMAGE_TYPES},
        "diameter_min": min(diameters) if diameters else None,
        "diameter_max": max(diameters) if diameters else None,
        "diameter_median": float(np.median(diameters)) if diameters else None,
        "p01_min": min(float(p["p01"]) for p in profiles) if profiles else None,
        "p99_max": max(float(p["p99"]) for p in profiles) if profiles else None,
    }
