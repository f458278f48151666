"""The training sets of both loops and their loaders: cached reading, random augmentation,
sampling (shuffled, class-weighted, DDP shares) and batching.

The deterministic part of each item (reading the array, padding, listing foreground voxels)
is cached once; from the second epoch on an item costs only its random crops and augmentation.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from monai.data import (
    CacheDataset,
    DataLoader,
    Dataset,
    get_track_meta,
    list_data_collate,
    set_track_meta,
)
from monai.transforms import Compose, Lambdad, Transform

from medcnn.hardware import resolve_workers
from medcnn.train import distributed
from medcnn.transforms.radiograph import KEY, augment_transforms
from medcnn.transforms.segmentation import IMAGE, LABEL, LoadArraysd, train_transforms
from medcnn.transforms.slices import (
    foreground_slices,
    slice_settings,
    slice_stack,
    slice_view,
    slice_weights,
)


@contextmanager
def without_meta_tracking() -> Iterator[None]:
    """MONAI's metadata tracking off while the training batches are drawn (and in loader
    workers forked meanwhile), restored afterwards.

    The training transforms read no metadata and end in ``EnsureTyped(track_meta=False)``,
    so every value is the same (``tests/train/test_loaders_meta.py`` compares them); with
    tracking on, each random transform wraps its array in a ``MetaTensor`` and copies the
    metadata and transform stack through every operation: a 224 x 224 radiograph's
    augmentation took 2.0 ms instead of 2.7-3.5, a 2D nuclei patch pair 4.6-9.7 instead of
    10-12 (one core, 2026-12-06, with other work running).
    """
    previous = get_track_meta()
    set_track_meta(False)
    try:
        yield
    finally:
        set_track_meta(previous)


def load_array(path: str) -> np.ndarray:
    return np.load(path)


def classifier_loader(
    train_items: list[dict[str, Any]],
    draw_weights: np.ndarray,
    settings: dict[str, Any],
    size: int,
    device: torch.device,
    threads: int,
) -> tuple[CacheDataset, Any, DataLoader, torch.Generator, int]:
    """The cached, augmented training set and its loader (DDP: this rank's share).

    Returns:
        (dataset, sampler or None, loader, the loader's generator, loader workers).
    """
    augment = (
        augment_transforms(size, flip=settings["flip"]) if settings["augment"] else Compose([])
    )
    # The deterministic part (reading the array) is cached once; from the second epoch on
    # an item costs only its random augmentation.
    dataset = CacheDataset(
        train_items,
        transform=Compose([Lambdad(keys=KEY, func=load_array), *augment.transforms]),
        num_workers=None,
        progress=False,
    )
    workers = resolve_workers(settings["num_workers"], device, threads)
    if distributed.world_size() > 1 and settings["num_workers"] == "auto" and device.type == "cuda":
        # The node's cores are shared by its ranks.
        workers = max(1, workers // distributed.local_world_size())
    generator = torch.Generator()
    batch_size = distributed.per_rank_batch(settings["batch_size"])
    balance = settings["balance"]
    # DDP: each rank takes its share of the shuffled (or weighted) draws of (seed, epoch).
    sampler = distributed.sampler(
        dataset,
        shuffle=True,
        seed=int(settings["seed"]),
        weights=torch.as_tensor(draw_weights) if balance == "sampler" else None,
    )
    if sampler is None and balance == "sampler":
        sampler = torch.utils.data.WeightedRandomSampler(
            torch.as_tensor(draw_weights, dtype=torch.double),
            num_samples=len(train_items),
            replacement=True,
            generator=generator,
        )
    per_rank_items = len(sampler) if sampler is not None else len(train_items)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=sampler is None,
        sampler=sampler,
        num_workers=workers,
        generator=generator,
        pin_memory=device.type == "cuda",
        drop_last=per_rank_items > batch_size,
    )
    return dataset, sampler, loader, generator, workers


def segmenter_loader(
    train_items: Sequence[Mapping[str, Any]],
    plans: Mapping[str, Any],
    settings: Mapping[str, Any],
    device: torch.device,
) -> tuple[CacheDataset, DataLoader, torch.Generator]:
    """The cached training cases and their loader. ``settings``: the trainer's
    (:func:`medcnn.train.segmenter.settings_of`); each case gives ``samples_per_image``
    patches, so a batch of ``plans["batch_size"]`` patches takes ``batch_size // samples``
    cases. 2D-on-volume plans (``plans["slices"]``) draw slices instead
    (:func:`slice_loader`)."""
    if slice_settings(plans) is not None:
        return slice_loader(train_items, plans, settings, device)
    samples = int(settings["samples_per_image"])
    augmentation = _augmentation(plans, settings)
    # Reading the arrays, padding and listing foreground/background voxels are done once
    # and cached; an epoch then costs only the random crops and augmentation.
    dataset = CacheDataset(
        list(train_items),
        transform=Compose([LoadArraysd(), *augmentation.transforms]),
        num_workers=None,
        progress=False,
    )
    generator = torch.Generator()
    return dataset, _patch_loader(dataset, plans, samples, device, generator), generator


def _augmentation(plans: Mapping[str, Any], settings: Mapping[str, Any]) -> Compose:
    """The training transforms of ``plans`` with the trainer's sampling and augmentation
    ``settings`` (:func:`medcnn.train.segmenter.settings_of`)."""
    return train_transforms(
        plans,
        samples_per_image=int(settings["samples_per_image"]),
        positive_fraction=float(settings["positive_fraction"]),
        scale_range=settings["scale_range"],
        augment=bool(settings["augment"]),
    )


class VolumeSliced(Transform):
    """``{"case": k, "slice": s}`` -> the image and label of slice ``s`` of training volume
    ``k`` (``(C * (2 * context + 1), H, W)`` and ``(1, H, W)``,
    :func:`~medcnn.transforms.slices.slice_stack`), from volumes held in memory once."""

    def __init__(
        self, volumes: Sequence[Mapping[str, np.ndarray]], axis: int, context: int
    ) -> None:
        self.volumes, self.axis, self.context = volumes, int(axis), int(context)

    def __call__(self, data: Mapping[str, Any]) -> dict[str, Any]:
        volume = self.volumes[int(data["case"])]
        s = [int(data["slice"])]
        return {
            IMAGE: slice_stack(volume[IMAGE], self.axis, self.context, s)[0],
            LABEL: np.ascontiguousarray(np.moveaxis(volume[LABEL], self.axis + 1, 1)[:, s[0]]),
        }


def slice_loader(
    train_items: Sequence[Mapping[str, Any]],
    plans: Mapping[str, Any],
    settings: Mapping[str, Any],
    device: torch.device,
) -> tuple[Dataset, DataLoader, torch.Generator]:
    """The training slices of 2D-on-volume plans and their loader.

    Every slice of every training volume along ``plans["slices"]["axis_index"]`` is an
    item; a weighted sampler (the loader's seeded generator) draws slices with foreground
    ``foreground_fraction`` of the time (:func:`~medcnn.transforms.slices.slice_weights`,
    each volume weighted alike), and each drawn slice gives ``samples_per_image`` 2D
    patches through the 2D training transforms (crops by ``positive_fraction``, flips,
    quarter turns, rotation, scaling, elastic, intensity) of :func:`slice_view`'s plans.
    The volumes are read once and held in memory; a slice is cut when it is drawn.
    """
    slices = slice_settings(plans) or {}
    axis, context = int(slices["axis_index"]), int(slices["context"])
    view = slice_view(plans)
    samples = int(settings["samples_per_image"])
    augmentation = _augmentation(view, settings)
    load = LoadArraysd()
    volumes = [load(dict(item)) for item in train_items]
    index, weights = [], []
    for k, volume in enumerate(volumes):
        has_fg = foreground_slices(volume[LABEL], axis)
        w = slice_weights(has_fg, float(slices["foreground_fraction"])) / len(volumes)
        index += [{"case": k, "slice": s} for s in range(len(has_fg))]
        weights.append(w)
    dataset = Dataset(
        index, transform=Compose([VolumeSliced(volumes, axis, context), *augmentation.transforms])
    )
    generator = torch.Generator()
    sampler = torch.utils.data.WeightedRandomSampler(
        torch.as_tensor(np.concatenate(weights), dtype=torch.double),
        num_samples=len(index),
        replacement=True,
        generator=generator,
    )
    loader = _patch_loader(dataset, plans, samples, device, generator, sampler)
    return dataset, loader, generator


def _patch_loader(
    dataset: Any,
    plans: dict[str, Any],
    samples: int,
    device: torch.device,
    generator: torch.Generator,
    sampler: Any = None,
) -> DataLoader:
    """The training loader of either kind: ``plans["batch_size"]`` patches a step (each
    item yields ``samples`` of them), in this process, drawn by ``sampler`` or shuffled."""
    return DataLoader(
        dataset,
        batch_size=max(1, int(plans["batch_size"]) // samples),
        shuffle=sampler is None,
        sampler=sampler,
        num_workers=0,
        generator=generator,
        collate_fn=list_data_collate,
        pin_memory=device.type == "cuda",
    )
