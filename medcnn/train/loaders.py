"""The training sets of both loops and their loaders: cached reading, random augmentation,
sampling (shuffled, class-weighted, DDP shares) and batching.

The deterministic part of each item (reading the array, padding, listing foreground voxels)
is cached once; from the second epoch on an item costs only its random crops and augmentation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.data import CacheDataset, DataLoader, list_data_collate
from monai.transforms import Compose, Lambdad

from medcnn.hardware import resolve_workers
from medcnn.train import distributed
from medcnn.transforms.radiograph import KEY, augment_transforms
from medcnn.transforms.segmentation import LoadArraysd, train_transforms


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
    cases."""
    samples = int(settings["samples_per_image"])
    augmentation = train_transforms(
        plans,
        samples_per_image=samples,
        positive_fraction=float(settings["positive_fraction"]),
        scale_range=settings["scale_range"],
        augment=bool(settings["augment"]),
    )
    # Reading the arrays, padding and listing foreground/background voxels are done once
    # and cached; an epoch then costs only the random crops and augmentation.
    dataset = CacheDataset(
        list(train_items),
        transform=Compose([LoadArraysd(), *augmentation.transforms]),
        num_workers=None,
        progress=False,
    )
    generator = torch.Generator()
    loader = DataLoader(
        dataset,
        batch_size=max(1, int(plans["batch_size"]) // samples),
        shuffle=True,
        num_workers=0,
        generator=generator,
        collate_fn=list_data_collate,
        pin_memory=device.type == "cuda",
    )
    return dataset, loader, generator
