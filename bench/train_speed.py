"""Training throughput at 224 x 224: medcnn's loop, MONAI's tutorial loop, and the ceiling.

    PYTHONPATH=. python bench/train_speed.py [--size 224] [--batch 16] [--images 48]
        [--epochs 3] [--threads N] [--network densenet121]

Four figures, from one run on one machine:

* **tutorial** - the loop of MONAI's classification tutorials (MedNIST): images read from
  PNG files every epoch through ``LoadImage``/``ScaleIntensity``/``RandRotate``/``RandFlip``/
  ``RandZoom`` in DataLoader workers, ``Adam``, ``CrossEntropyLoss``, fp32, NCHW.
* **medcnn** - :func:`medcnn.train.classifier_epoch.train_one_epoch` as training runs it: arrays
  cached by ``CacheDataset`` (only augmentation each epoch), channels-last, bf16 autocast where
  :func:`~medcnn.hardware.resolve_precision` measures that it pays, AdamW (fused, as
  :func:`medcnn.train.schedules.adamw` makes it) + one-cycle, gradient clipping and the EMA
  weight average.
* **plain eager** - what a user writes without tuning: tensors already in memory, no
  augmentation, fp32, ``torch.optim.AdamW`` with PyTorch's defaults, NCHW or channels-last.
* **ceiling** - the model's training FLOPs per image (forward + backward, counted by
  ``torch.utils.flop_counter``) at the machine's measured convolution throughput: every
  convolution of the network timed alone (forward + backward, at its own shapes, in the
  precision and layout medcnn uses). No training step can beat it: it leaves out
  normalisation, activations, concatenation and the optimiser, and gives the few non-conv
  FLOPs conv speed.

The loops alternate epoch by epoch so a change in machine load hits them all; the first epoch of
each (kernel set-up, cache filling) is not counted. Figures are images per second of
training (forward, backward, optimiser step), median over the counted epochs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from monai.data import CacheDataset, DataLoader
from monai.transforms import (
    Compose,
    EnsureChannelFirst,
    Lambdad,
    LoadImage,
    RandFlip,
    RandRotate,
    RandZoom,
    ScaleIntensity,
)
from torch.utils.flop_counter import FlopCounterMode

from medcnn.config import validate_config
from medcnn.hardware import autocast, cpu_supports_bf16, resolve_precision, resolve_workers
from medcnn.models.factory import build_network
from medcnn.train.classifier_epoch import ClassifierStep, train_one_epoch
from medcnn.train.schedules import adamw, lr_schedule
from medcnn.train.weights import ExponentialAverage
from medcnn.transforms.radiograph import KEY, augment_transforms

#: The schema's training defaults (what a task gets with no ``train:`` keys).
TRAIN_DEFAULTS = validate_config(
    {
        "inputs": ["x"],
        "tasks": {"t": {"kind": "classification", "target": {"column": "c", "positive": "1"}}},
    }
)["tasks"]["t"]["train"]


def write_images(folder: Path, n: int, size: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """``n`` synthetic 8-bit radiograph-like images as PNG (tutorial) and .npy (medcnn)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    pngs, arrays = [], []
    yy, xx = np.mgrid[:size, :size] / size
    for k in range(n):
        image = 0.5 + 0.2 * np.sin(6 * xx + k) * np.cos(4 * yy) + 0.05 * rng.random((size, size))
        pixels = (np.clip(image, 0, 1) * 255).astype(np.uint8)
        png = folder / f"{k:04d}.png"
        Image.fromarray(pixels).save(png)
        npy = folder / f"{k:04d}.npy"
        np.save(npy, (pixels[None] / 255.0).astype(np.float32))
        pngs.append(str(png))
        arrays.append(str(npy))
    return pngs, arrays


class TutorialDataset(torch.utils.data.Dataset):
    """The MedNIST tutorial's dataset: a file list, a label list, an array transform."""

    def __init__(self, files: list[str], labels: list[int], transforms: Compose) -> None:
        self.files, self.labels, self.transforms = files, labels, transforms

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int):
        return self.transforms(self.files[index]), self.labels[index]


def tutorial_setup(pngs: list[str], labels: list[int], batch: int, network: str):
    transforms = Compose(
        [
            LoadImage(image_only=True),
            EnsureChannelFirst(),
            ScaleIntensity(),
            RandRotate(range_x=np.pi / 12, prob=0.5, keep_size=True),
            RandFlip(spatial_axis=0, prob=0.5),
            RandZoom(min_zoom=0.9, max_zoom=1.1, prob=0.5),
        ]
    )
    loader = DataLoader(
        TutorialDataset(pngs, labels, transforms),
        batch_size=batch,
        shuffle=True,
        num_workers=min(10, os.cpu_count() or 1),
    )
    model = build_network(network, 2, 1, 2)
    optimizer = torch.optim.Adam(model.parameters(), 1e-5)
    loss_function = torch.nn.CrossEntropyLoss()

    def epoch() -> int:
        model.train()
        seen = 0
        for batch_data in loader:
            inputs, targets = batch_data[0], batch_data[1]
            optimizer.zero_grad()
            outputs = model(inputs)
            loss = loss_function(outputs, targets)
            loss.backward()
            optimizer.step()
            seen += len(inputs)
        return seen

    return epoch


def medcnn_setup(arrays: list[str], labels: list[int], batch: int, network: str, threads: int):
    device = torch.device("cpu")
    items = [
        {KEY: a, "label": np.array([float(y)], dtype=np.float32)}
        for a, y in zip(arrays, labels, strict=True)
    ]
    size = int(np.load(arrays[0]).shape[-1])
    dataset = CacheDataset(
        items,
        transform=Compose([Lambdad(keys=KEY, func=np.load), *augment_transforms(size).transforms]),
        progress=False,
    )
    workers = resolve_workers("auto", device, threads)
    loader = DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=workers)
    model = build_network(network, 2, 1, 1).to(memory_format=torch.channels_last)
    example = torch.as_tensor(np.stack([np.load(a) for a in arrays[:4]]))
    precision, info = resolve_precision(
        "auto", device, model, example.contiguous(memory_format=torch.channels_last)
    )
    settings = TRAIN_DEFAULTS
    optimizer = adamw(model.parameters(), 1e-3, 1e-4)
    scheduler = lr_schedule(optimizer, settings, 10_000, max(1, len(loader)))
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    loss_fn = torch.nn.BCEWithLogitsLoss()

    step = ClassifierStep(
        model, loss_fn, optimizer, scheduler, scaler, device, precision, torch.channels_last
    )
    step.clip_grad_norm = settings["clip_grad_norm"]
    step.ema = ExponentialAverage(model, 0.99)

    def epoch() -> int:
        _, seen, _ = train_one_epoch(step, loader)
        return seen

    return epoch, precision, info, workers


def eager_setup(arrays: list[str], labels: list[int], batch: int, network: str, layout: str):
    """The plainest fast loop: tensors already in memory, no augmentation, fp32, AdamW,
    the given memory layout."""
    memory_format = torch.channels_last if layout == "NHWC" else torch.contiguous_format
    images = torch.as_tensor(np.stack([np.load(a) for a in arrays]))
    targets = torch.as_tensor(labels, dtype=torch.float32)[:, None]
    model = build_network(network, 2, 1, 1).to(memory_format=memory_format)
    optimizer = torch.optim.AdamW(model.parameters(), 1e-3, weight_decay=1e-4)
    loss_fn = torch.nn.BCEWithLogitsLoss()

    def epoch() -> int:
        model.train()
        order = torch.randperm(len(images))
        for start in range(0, len(images), batch):
            pick = order[start : start + batch]
            x = images[pick].contiguous(memory_format=memory_format)
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(x), targets[pick])
            loss.backward()
            optimizer.step()
        return len(images)

    return epoch


def training_flops_per_image(network: str, size: int) -> float:
    """Forward + backward FLOPs of one image (a multiply-add counts 2)."""
    model = build_network(network, 2, 1, 1)
    x = torch.randn(2, 1, size, size)
    with FlopCounterMode(display=False) as counter:
        model(x).sum().backward()
    return counter.get_total_flops() / 2


def conv_throughput(network: str, size: int, batch: int, precision: str) -> tuple[float, float]:
    """(conv FLOP/s, seconds per batch) of the network's convolutions timed one by one."""
    model = build_network(network, 2, 1, 1).to(memory_format=torch.channels_last)
    shapes: list[tuple[torch.nn.Conv2d, torch.Size]] = []
    hooks = [
        m.register_forward_hook(lambda mod, inp, out: shapes.append((mod, inp[0].shape)))
        for m in model.modules()
        if isinstance(m, torch.nn.Conv2d)
    ]
    with torch.no_grad():
        model(torch.randn(batch, 1, size, size).contiguous(memory_format=torch.channels_last))
    for h in hooks:
        h.remove()
    device = torch.device("cpu")
    total_seconds, total_flops = 0.0, 0.0
    for conv, shape in shapes:
        x = torch.randn(shape).contiguous(memory_format=torch.channels_last).requires_grad_()
        times = []
        for k in range(3):
            start = time.perf_counter()
            with autocast(device, precision):
                out = conv(x)
            out.float().sum().backward()
            if k:
                times.append(time.perf_counter() - start)
        with FlopCounterMode(display=False) as counter, autocast(device, precision):
            conv(x).float().sum().backward()
        total_seconds += min(times)
        total_flops += counter.get_total_flops()
    return total_flops / total_seconds, total_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--images", type=int, default=48, help="images per epoch")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per loop (first not counted)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--network", default="densenet121")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        pngs, arrays = write_images(Path(tmp), args.images, args.size)
        labels = [k % 2 for k in range(args.images)]
        tutorial = tutorial_setup(pngs, labels, args.batch, args.network)
        ours, precision, info, workers = medcnn_setup(
            arrays, labels, args.batch, args.network, args.threads
        )
        loops = {
            "tutorial": tutorial,
            "eager_nhwc": eager_setup(arrays, labels, args.batch, args.network, "NHWC"),
            "eager_nchw": eager_setup(arrays, labels, args.batch, args.network, "NCHW"),
            "medcnn": ours,
        }
        rates: dict[str, list[float]] = {name: [] for name in loops}
        for epoch in range(args.epochs):
            for name, run in loops.items():
                start = time.perf_counter()
                seen = run()
                if epoch:
                    rates[name].append(seen / (time.perf_counter() - start))
    flops = training_flops_per_image(args.network, args.size)
    conv_rate, conv_seconds = conv_throughput(args.network, args.size, args.batch, precision)
    ceiling = conv_rate / flops
    tutorial_rate = statistics.median(rates["tutorial"])
    medcnn_rate = statistics.median(rates["medcnn"])
    print(
        f"{args.network} training at {args.size}x{args.size}, batch {args.batch}, "
        f"{args.threads} threads, CPU ({os.cpu_count()} cores), ATen kernels "
        f"{torch.backends.cpu.get_cpu_capability()}, ONEDNN_MAX_CPU_ISA="
        f"{os.environ.get('ONEDNN_MAX_CPU_ISA', '(unset)')}, oneDNN reports native bf16: "
        f"{cpu_supports_bf16()}"
    )
    print(
        f"medcnn chose precision {precision}, layout NHWC (train.channels_last), {workers} "
        f"loader workers; why: {info.get('reason')} "
        f"(fastest CPU s of a forward+backward of 4 images: {info.get('seconds')})"
    )
    print(f"training FLOPs per image: {flops / 1e9:.2f} GFLOP (forward + backward)")
    print(
        f"convolution throughput: {conv_rate / 1e9:.1f} GFLOP/s "
        f"({conv_seconds:.2f} s of convolutions per batch of {args.batch}, {precision})"
    )
    print()
    print(f"| {'loop':<30} | {'images/s':>9} | {'vs tutorial':>11} | {'of ceiling':>10} |")
    print(f"|{'-' * 32}|{'-' * 11}|{'-' * 13}|{'-' * 12}|")
    eager_rate = statistics.median(rates["eager_nhwc"])
    for name, rate in (
        ("MONAI tutorial loop (fp32)", tutorial_rate),
        ("plain eager loop (fp32, NCHW)", statistics.median(rates["eager_nchw"])),
        ("plain eager loop (fp32, NHWC)", eager_rate),
        (f"medcnn loop ({precision}, NHWC)", medcnn_rate),
        ("ceiling (FLOPs / conv speed)", ceiling),
    ):
        print(
            f"| {name:<30} | {rate:>9.2f} | {rate / tutorial_rate:>10.2f}x "
            f"| {100 * rate / ceiling:>9.0f}% |"
        )
    print(f"\nmedcnn loop / plain eager NHWC loop: {medcnn_rate / eager_rate:.2f}x")
    print(
        "per-epoch images/s: "
        + "; ".join(f"{name} {[round(r, 2) for r in values]}" for name, values in rates.items())
    )


if __name__ == "__main__":
    main()
