"""Give each GPU job its own device on a multi-GPU workstation.

Snakemake's ``--resources gpu=N`` limits how many GPU jobs run at once, but does not say
*which* GPU each one should use, so two jobs would both start on device 0. A job here claims
devices through lock files (``fcntl.flock``), one per device and slot, and sets
``CUDA_VISIBLE_DEVICES`` before CUDA is initialised. The kernel releases a lock when its
process dies, even by ``kill -9``, so a crashed job never leaves a device claimed.

Where a scheduler already chose (SLURM sets ``CUDA_VISIBLE_DEVICES`` for ``--gpus``), or the
user did, that choice is kept and nothing is locked.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)

#: Simulates a GPU count (tests, or machines where the count is known in advance).
COUNT_ENV = "MEDCNN_GPU_COUNT"
LOCK_DIR_ENV = "MEDCNN_GPU_LOCK_DIR"


def gpu_count() -> int:
    """Visible CUDA devices: ``$MEDCNN_GPU_COUNT`` when set, else what torch sees."""
    if os.environ.get(COUNT_ENV):
        return int(os.environ[COUNT_ENV])
    import torch

    return torch.cuda.device_count()


def _lock_dir() -> Path:
    default = Path(tempfile.gettempdir()) / f"medcnn-gpu-locks-{os.getuid()}"
    folder = Path(os.environ.get(LOCK_DIR_ENV, default))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@contextlib.contextmanager
def claim_gpus(
    n: int, jobs_per_gpu: int = 1, poll_seconds: float = 1.0, timeout: float | None = None
) -> Iterator[list[int]]:
    """Claim ``n`` distinct GPUs for the duration of the ``with`` block.

    Sets ``CUDA_VISIBLE_DEVICES`` to the claimed indices (so inside the job they are
    ``cuda:0`` … ``cuda:n-1``) and restores it afterwards.

    Args:
        n: devices wanted; 0 claims nothing.
        jobs_per_gpu: how many jobs may share one device (1: never two jobs on one GPU).
        poll_seconds: wait between attempts when every device is taken.
        timeout: give up after this many seconds (None: wait as long as it takes).

    Yields:
        The physical device indices claimed (empty when the choice came from outside).

    Raises:
        RuntimeError: more devices asked for than the machine has, or the timeout passed.
    """
    if n <= 0:
        yield []
        return
    if os.environ.get("CUDA_VISIBLE_DEVICES"):
        log.info(
            "using the scheduler's CUDA_VISIBLE_DEVICES=%s", os.environ["CUDA_VISIBLE_DEVICES"]
        )
        yield []
        return
    total = gpu_count()
    if n > total:
        raise RuntimeError(f"this job asks for {n} GPU(s) but the machine has {total}")
    folder = _lock_dir()
    deadline = None if timeout is None else time.monotonic() + timeout
    handles: list = []
    claimed: list[int] = []
    try:
        while True:
            for device in range(total):
                if device in claimed:
                    continue
                for slot in range(max(1, jobs_per_gpu)):
                    handle = open(folder / f"gpu{device}.slot{slot}.lock", "w")  # noqa: SIM115
                    try:
                        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except BlockingIOError:
                        handle.close()
                        continue
                    handles.append(handle)
                    claimed.append(device)
                    break
                if len(claimed) == n:
                    break
            if len(claimed) == n:
                break
            # Not enough free: let go of partial claims so two jobs cannot deadlock.
            for handle in handles:
                handle.close()
            handles, claimed = [], []
            if deadline is not None and time.monotonic() > deadline:
                raise RuntimeError(f"no {n} free GPU(s) within {timeout} s (locks in {folder})")
            time.sleep(poll_seconds)
        previous = os.environ.get("CUDA_VISIBLE_DEVICES")
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(str(d) for d in claimed)
        log.info("claimed GPU(s) %s", os.environ["CUDA_VISIBLE_DEVICES"])
        try:
            yield claimed
        finally:
            if previous is None:
                os.environ.pop("CUDA_VISIBLE_DEVICES", None)
            else:
                os.environ["CUDA_VISIBLE_DEVICES"] = previous
    finally:
        for handle in handles:
            handle.close()


def resolve_device(setting: str, gpus: int) -> str:
    """The one meaning of ``device: auto``: CUDA when the job has GPUs, else the CPU.

    A workflow job has GPUs only when its stage asks for them (``resources.<stage>.gpu``):
    a job that did not claim a device must not start on whichever GPU happens to be device 0.
    Called from a Python session (no stage), ``gpus`` is what torch sees.

    Args:
        setting: ``auto``, ``cpu`` or ``cuda`` (the config's ``device``).
        gpus: the GPUs the job may use.

    Returns:
        ``setting`` itself unless it is ``auto``.
    """
    if setting != "auto":
        return setting
    return "cuda" if gpus else "cpu"


@contextlib.contextmanager
def stage_device(config: dict, stage: str) -> Iterator[int]:
    """Claim a stage's GPUs (if any) and resolve ``config["device"]`` for this job.

    Yields:
        The number of CUDA devices the job may use (0 when it asked for none).
    """
    gpus = config["resources"][stage].get("gpu", 0)
    with claim_gpus(gpus, config["resources"]["jobs_per_gpu"]):
        config["device"] = resolve_device(config["device"], gpus)
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "")
        yield len([d for d in visible.split(",") if d.strip()]) if gpus else 0
