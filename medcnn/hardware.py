"""Use the hardware well: device, arithmetic precision, memory layout and loader workers.

Mixed precision only where it pays: bf16 autocast on a CPU is fast where the CPU has bf16
matrix units (AMX, AVX512-BF16) and slower than fp32 where it emulates them (AVX2-only
CPUs), so ``auto`` measures both on the model at hand, on every CPU, instead of guessing from
the CPU's name or flags.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch

from medcnn.devices import resolve_device

log = logging.getLogger(__name__)

#: bf16 must be at least this much faster than fp32 to be chosen by ``auto`` (it costs some
#: accuracy in the gradients, so a tie goes to fp32).
BF16_MIN_SPEEDUP = 1.1

#: ``train.compile: auto`` keeps the compiled network when its training pass is at least this
#: much faster than the eager one, and compiles only with a time budget of at least
#: :data:`COMPILE_MIN_MINUTES` (a first compile costs about a CPU-minute).
COMPILE_MIN_SPEEDUP = 1.1
COMPILE_MIN_MINUTES = 10.0


def pick_device(setting: str) -> torch.device:
    """The torch device of a ``device`` setting (:func:`medcnn.devices.resolve_device` says
    what ``auto`` means; outside a stage job the GPUs are those torch sees)."""
    return torch.device(resolve_device(setting, torch.cuda.device_count()))


def cpu_supports_bf16() -> bool:
    """Whether oneDNN runs bf16 natively here (AVX512-BF16 or AMX)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def native_bf16(device: torch.device | str = "cpu") -> bool:
    """Whether ``device`` computes bfloat16 natively (faster than fp32, not emulated)."""
    device = torch.device(device)
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    return cpu_supports_bf16()


def model_device(model: torch.nn.Module) -> torch.device:
    """Where a network's parameters are (its inputs go there)."""
    return next(model.parameters()).device


@contextlib.contextmanager
def autocast(device: torch.device, precision: str) -> Iterator[None]:
    """Autocast to ``precision`` (``fp32``: none) on ``device``."""
    if precision == "fp32":
        yield
        return
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    with torch.autocast(device_type=device.type, dtype=dtype):
        yield


def _step_seconds(
    model: torch.nn.Module,
    batch: torch.Tensor,
    device: torch.device,
    precisions: tuple[str, ...],
    repeats: int,
) -> dict[str, float]:
    """Fastest seconds of a forward + backward pass in each precision.

    The precisions take turns, after one warm-up pass each (oneDNN builds its kernels
    then). On a CPU the clock is this process's CPU time, and the statistic the minimum:
    other processes on the cores (three training folds sharing two, a test run) only ever
    add to a pass, and CPU time leaves out the time they hold the core (with several torch
    threads it sums theirs: the CPU cost a ``train.clock: cpu`` budget counts). Beside two
    processes of bursty load the nuclei U-Net's fp32/bf16 ratio measured 0.78-2.04 by the
    wall clock's median of two passes and 1.40-1.78 this way (``bench/precision_check.py``,
    8 checks each); the median of two wall-clock passes once chose fp32 in a training fold
    where bf16 was about 1.5x faster.
    """
    clock = time.perf_counter if device.type == "cuda" else time.process_time

    def step(precision: str) -> Callable[[], None]:
        def run() -> None:
            with autocast(device, precision):
                out = model(batch)
            out.float().sum().backward()
            if device.type == "cuda":
                torch.cuda.synchronize()

        return run

    passes = {p: step(p) for p in precisions}
    return _fastest_seconds(passes, model, repeats, clock, warmup=True, settled=_decided)


def _fastest_seconds(
    passes: dict[str, Callable[[], None]],
    model: torch.nn.Module,
    repeats: int,
    clock: Callable[[], float],
    warmup: bool,
    settled: Callable[[dict[str, list[float]]], bool] | None = None,
) -> dict[str, float]:
    """The fastest of ``repeats`` timed runs of each pass, the passes taking turns (after
    one untimed round with ``warmup``), ``model``'s gradients cleared after every run;
    fewer rounds once ``settled`` says the runs so far decide."""
    times: dict[str, list[float]] = {name: [] for name in passes}
    for k in range(repeats + int(warmup)):
        for name, run in passes.items():
            start = clock()
            run()
            if k or not warmup:
                times[name].append(clock() - start)
            model.zero_grad(set_to_none=True)
        if settled is not None and all(times.values()) and settled(times):
            break
    return {name: min(t) for name, t in times.items()}


def _decided(times: dict[str, list[float]]) -> bool:
    """Whether the passes so far already settle the choice: every other precision's
    speedup over the first (fp32) at most half the bar, ``BF16_MIN_SPEEDUP / 2``. Other
    work on the cores only lengthens a pass, and beside bursty load the nuclei U-Net's
    ratio measured 0.9-1.25x its value alone (``bench/precision_check.py``), so no further
    pass could lift a ratio from half the bar to the bar. Where the CPU has no bf16 units a
    bf16 pass costs 10-14x an fp32 one (DenseNet121 at 224 px on a 2-core AVX2 CPU: 16.2 s
    against 1.6 s for 4 images), and the passes left would add half a minute to every
    training run."""
    first, *others = times
    fastest = min(times[first])
    return all(fastest / min(times[p]) <= BF16_MIN_SPEEDUP / 2 for p in others)


def resolve_precision(
    setting: str,
    device: torch.device,
    model: torch.nn.Module | None = None,
    example: torch.Tensor | None = None,
    repeats: int = 3,
) -> tuple[str, dict[str, Any]]:
    """The precision to train in, and how it was decided.

    Args:
        setting: ``auto``, ``fp32``, ``bf16`` or ``fp16`` (CUDA only).
        device: the training device.
        model: for ``auto`` on CPU, the network to time (a copy is timed: the pass would
            otherwise move its batch-norm statistics).
        example: for ``auto`` on CPU, an input batch ``(B, C, H, W)`` on ``device``.
        repeats: timed passes per precision.

    Returns:
        (``fp32``/``bf16``/``fp16``, ``{"setting", "reason", "seconds": {precision: s}}``).

    Raises:
        ValueError: fp16 asked for on a CPU.
    """
    info: dict[str, Any] = {"setting": setting}
    if setting == "fp16" and device.type != "cuda":
        raise ValueError("precision fp16 needs CUDA; use bf16 or fp32 on a CPU")
    if setting != "auto":
        info["reason"] = "configured"
        return setting, info
    if device.type == "cuda":
        chosen = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        info["reason"] = "CUDA: AMP"
        return chosen, info
    if model is None or example is None:
        info["reason"] = "nothing to measure"
        return "fp32", info
    probe = copy.deepcopy(model).train()
    # The timing must not consume the training run's random numbers.
    with torch.random.fork_rng(devices=[]):
        seconds = _step_seconds(probe, example, device, ("fp32", "bf16"), repeats)
    del probe
    speedup = seconds["fp32"] / seconds["bf16"]
    chosen = "bf16" if speedup >= BF16_MIN_SPEEDUP else "fp32"
    # Measured even where the CPU flags say no bf16 units: the flags describe the chip, not
    # what oneDNN may use (ONEDNN_MAX_CPU_ISA, a VM's masked features).
    native = "oneDNN reports native bf16" if cpu_supports_bf16() else "no native bf16 reported"
    info.update(
        reason=f"measured: bf16 {speedup:.2f}x fp32 ({native}; bf16 needs >= {BF16_MIN_SPEEDUP}x)",
        seconds={k: round(v, 4) for k, v in seconds.items()},
    )
    log.info("precision auto -> %s (%s)", chosen, info["reason"])
    return chosen, info


def resolve_workers(setting: int | str, device: torch.device, threads: int) -> int:
    """DataLoader workers: the configured number, or for ``auto`` what keeps the model fed.

    On CUDA the CPU only prepares data, so up to 8 workers. On a CPU the workers take cores
    from the model's own threads: augmentation costs a few per cent of a training step, so
    one worker hides it once the job has 4 threads, and none below that (forking a worker
    would cost more than it hides).
    """
    if setting != "auto":
        return int(setting)
    if device.type == "cuda":
        return max(1, min(8, (os.cpu_count() or 2) - 1))
    return 1 if threads >= 4 else 0


def resolve_compile(
    setting: str | bool,
    device: torch.device,
    model: torch.nn.Module,
    train_pass: Callable[[Callable[[torch.Tensor], torch.Tensor]], None],
    budget_minutes: float | None,
    repeats: int = 3,
) -> tuple[Callable[[torch.Tensor], torch.Tensor], dict[str, Any]]:
    """The forward to train with: ``model`` itself or ``torch.compile(model)``, which shares
    its parameters (the eager module stays what is validated and saved).

    Args:
        setting: ``train.compile``: ``auto``, True or False.
        device: the training device.
        model: the network, in training mode.
        train_pass: one forward + backward of a training batch through the callable given
            (gradients are cleared after each pass here).
        budget_minutes: the training time budget (None: none); ``auto`` compiles only with
            at least :data:`COMPILE_MIN_MINUTES`.
        repeats: timed passes of each for ``auto``.

    Returns:
        (the forward, ``{"setting", "reason", "seconds": {"eager", "compiled"}}``). A compile
        that fails (no C++ compiler, an operator TorchInductor cannot lower) gives the eager
        model and the error as the reason, logged as a warning.
    """
    info: dict[str, Any] = {"setting": setting}
    if setting is False:
        info["reason"] = "configured"
        return model, info
    if setting == "auto" and device.type != "cpu":
        info["reason"] = "auto: compiled only on a CPU, where it was measured"
        return model, info
    if setting == "auto" and (budget_minutes is None or budget_minutes < COMPILE_MIN_MINUTES):
        info["reason"] = (
            f"auto: a time budget under {COMPILE_MIN_MINUTES:g} minutes does not repay a compile"
        )
        return model, info
    # The passes must not move the training run: its random numbers, normalisation
    # statistics and gradients are as they were before.
    buffers = {k: v.detach().clone() for k, v in model.named_buffers()}
    try:
        with torch.random.fork_rng(devices=[]):
            try:
                compiled = torch.compile(model, dynamic=False)
                for _ in range(2):  # the compile, then the backward graph's first run
                    train_pass(compiled)
                    model.zero_grad(set_to_none=True)
            except Exception as exc:  # inductor raises many types; training goes on eager
                model.zero_grad(set_to_none=True)
                info["reason"] = f"compile failed, training eager: {type(exc).__name__}: {exc}"
                info["reason"] = info["reason"][:500]
                log.warning("train.compile: %s", info["reason"])
                return model, info
            if setting is True:
                info.update(reason="configured", compiled=True)
                return compiled, info
            passes = {
                "eager": lambda: train_pass(model),
                "compiled": lambda: train_pass(compiled),
            }
            seconds = _fastest_seconds(passes, model, repeats, time.process_time, warmup=False)
    finally:
        _restore(model, buffers)
    speedup = seconds["eager"] / max(seconds["compiled"], 1e-9)
    keep = speedup >= COMPILE_MIN_SPEEDUP
    info.update(
        reason=f"measured: compiled {speedup:.2f}x eager (kept at >= {COMPILE_MIN_SPEEDUP}x)",
        seconds={k: round(v, 4) for k, v in seconds.items()},
        compiled=keep,
    )
    log.info("compile auto -> %s (%s)", "compiled" if keep else "eager", info["reason"])
    return (compiled if keep else model), info


def _restore(model: torch.nn.Module, buffers: dict[str, torch.Tensor]) -> None:
    with torch.no_grad():
        for name, value in model.named_buffers():
            value.copy_(buffers[name])
