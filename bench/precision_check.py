"""How steady the ``precision: auto`` check is when other processes share the cores.

    PYTHONPATH=. python bench/precision_check.py [--trials 6] [--load 2] [--threads 1]

Training with ``precision: auto`` on a CPU times a forward + backward pass of its network in
fp32 and in bf16 and trains in bf16 when that is at least
:data:`medcnn.hardware.BF16_MIN_SPEEDUP` times faster. The check runs once, at the start of
a training run, often while other work holds the cores (the three folds of
``bench/segmentation.py --nuclei-run-folds`` on two cores, a test run). This script times the
nuclei U-Net (2D, 16-256 channels, batch 8 of 128 x 128, the nuclei example's plans) the way
the check does now and the way it did before, in the same passes:

* **before**: the wall clock, the median of two passes per precision;
* **now** (:func:`medcnn.hardware._step_seconds`): this process's CPU time, the minimum of
  three passes per precision.

It runs ``--trials`` checks alone, then again beside ``--load`` processes of bursty work
(numpy matrix products on 2 threads, on and off at random for 0.05-0.6 s), and prints, for
each clock, the fp32/bf16 ratio's range and how many checks chose fp32 at the 1.1x bar. On a
CPU without native bf16 both choose fp32 and the ratio sits near or below 1.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import random
import time

import numpy as np
import torch

from medcnn.hardware import BF16_MIN_SPEEDUP, autocast, cpu_supports_bf16
from medcnn.models.factory import build_network


def bursty(seconds: float, seed: int) -> None:
    """On and off load on two threads until ``seconds`` have passed."""
    import os

    os.environ["OMP_NUM_THREADS"] = "2"
    rng = random.Random(seed)
    a = np.random.default_rng(seed).random((600, 600))
    end = time.time() + seconds
    while time.time() < end:
        busy = time.time() + rng.uniform(0.05, 0.6)
        while time.time() < busy:
            a @ a
        time.sleep(rng.uniform(0.05, 0.6))


def check(model: torch.nn.Module, batch: torch.Tensor) -> tuple[float, float]:
    """One check, timed both ways on the same passes: (before, now) fp32/bf16 ratios."""
    device = torch.device("cpu")
    wall: dict[str, list[float]] = {"fp32": [], "bf16": []}
    cpu: dict[str, list[float]] = {"fp32": [], "bf16": []}
    for k in range(4):
        for precision in ("fp32", "bf16"):
            w, c = time.perf_counter(), time.process_time()
            with autocast(device, precision):
                out = model(batch)
            out.float().sum().backward()
            model.zero_grad(set_to_none=True)
            if k:
                wall[precision].append(time.perf_counter() - w)
                cpu[precision].append(time.process_time() - c)
    before = sorted(wall["fp32"][:2])[1] / sorted(wall["bf16"][:2])[1]
    now = min(cpu["fp32"]) / min(cpu["bf16"])
    return before, now


def summary(ratios: list[float]) -> str:
    fp32 = sum(r < BF16_MIN_SPEEDUP for r in ratios)
    low, mid, high = min(ratios), float(np.median(ratios)), max(ratios)
    return f"{low:5.2f} {mid:6.2f} {high:5.2f} {fp32:>4d}/{len(ratios)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--load", type=int, default=2, help="processes of bursty load")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the check")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build_network(
        "unet", 2, 1, 4, channels=(16, 32, 64, 128, 256), strides=(2, 2, 2, 2), num_res_units=2
    ).train()
    batch = torch.zeros(8, 1, 128, 128)
    rows = []
    for label, load in (("alone", 0), (f"beside {args.load} bursty processes", args.load)):
        procs = [
            mp.get_context("spawn").Process(target=bursty, args=(3600.0, k)) for k in range(load)
        ]
        for p in procs:
            p.start()
        try:
            results = [check(model, batch) for _ in range(args.trials)]
        finally:
            for p in procs:
                p.terminate()
                p.join()
        rows.append((label, [r[0] for r in results], [r[1] for r in results]))
    print(
        f"precision check of the nuclei U-Net, {args.threads} torch thread(s); "
        f"native bf16: {cpu_supports_bf16()}; bf16 chosen at >= {BF16_MIN_SPEEDUP}x"
    )
    print(f"{'condition':36s} {'clock, statistic':26s}   min median   max fp32")
    for label, before, now in rows:
        print(f"{label:36s} {'wall, median of 2 (before)':26s} {summary(before)}")
        print(f"{'':36s} {'CPU, minimum of 3 (now)':26s} {summary(now)}")


if __name__ == "__main__":
    main()
