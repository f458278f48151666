"""Data-parallel training (DDP) on several GPUs of one node, for any medcnn trainer.

``medcnn train`` re-executes itself under ``torchrun`` when its job asks for more than one GPU
(:func:`relaunch_command`); every process then runs the same trainer, which uses the helpers
here. In a single process (no ``WORLD_SIZE`` above 1) every helper is a no-op, so a trainer
written with them runs unchanged without DDP.

The conventions a trainer follows:

- :func:`setup` once before building the model (it returns this rank's device), and
  :func:`teardown` at the end (or the :func:`process_group` context manager for both);
- :func:`wrap` the model after moving it to the device, :func:`unwrap` it for evaluation and
  for every ``state_dict`` that is saved (no ``module.`` prefix, so bundles load the same);
- :func:`sampler` for the training set, with ``set_epoch(epoch)`` before each epoch;
- only :func:`is_main` (rank 0) writes files and logs; decisions that every rank must share
  (precision, early stopping) are made on rank 0 and sent with :func:`broadcast`;
- :func:`check_replicas` at the end proves the ranks hold the same weights.

The batch size of the config is the *global* batch: each rank takes ``batch_size / world``
images per step (:func:`per_rank_batch`), so the learning rate, the schedule and the number
of steps per epoch mean what they mean in one process.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime
import hashlib
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import DistributedSampler, Sampler

log = logging.getLogger(__name__)

#: Forces DDP with this many processes whatever the GPU request (on a CPU: gloo). For tests
#: and for trying DDP out on a machine without GPUs.
PROCS_ENV = "MEDCNN_DDP_PROCS"
#: Set in the processes that ``torchrun`` starts, so that they do not relaunch themselves.
CHILD_ENV = "MEDCNN_DDP_CHILD"
#: How long a rank waits in a collective (e.g. for rank 0's validation) before failing.
TIMEOUT = datetime.timedelta(minutes=30)


def world_size() -> int:
    """Processes in the job (1 without DDP)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return int(os.environ.get("WORLD_SIZE", "1"))


def local_world_size() -> int:
    """Processes of the job on this node (they share its CPU threads)."""
    return int(os.environ.get("LOCAL_WORLD_SIZE", world_size()))


def rank() -> int:
    """This process's global rank (0 without DDP)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    """Whether this process writes the outputs and the log (rank 0)."""
    return rank() == 0


def active() -> bool:
    """Whether a process group of more than one process is running."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def setup(device: torch.device) -> torch.device:
    """Join the process group when started by ``torchrun`` with ``WORLD_SIZE`` > 1.

    NCCL on CUDA (each rank on ``cuda:LOCAL_RANK`` of the devices it sees), gloo on a CPU.

    Args:
        device: the device the job would use in one process (``cuda`` or ``cpu``).

    Returns:
        This rank's device (``device`` itself without DDP).
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return device
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise RuntimeError(
                f"DDP rank {local_rank} of this node has no GPU: {torch.cuda.device_count()} "
                f"visible (CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')}); "
                f"run at most one process per GPU (${PROCS_ENV} is for CPUs)"
            )
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, timeout=TIMEOUT)
        if is_main():
            log.info(
                "DDP: %d processes, backend %s, device %s on rank 0",
                dist.get_world_size(),
                backend,
                device,
            )
    return device


def teardown() -> None:
    """Leave the process group (no-op without one)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@contextlib.contextmanager
def process_group(device: torch.device) -> Iterator[torch.device]:
    """:func:`setup` on entry (yields this rank's device), :func:`teardown` on exit."""
    try:
        yield setup(device)
    finally:
        teardown()


def wrap(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``DistributedDataParallel`` around ``model`` (already on ``device``); as is without DDP.

    On CUDA, batch normalisation is synchronised across ranks (``SyncBatchNorm``): each rank
    sees only ``batch_size / world`` images, too few for good batch statistics on their own.
    (gloo has no SyncBatchNorm, so CPU ranks keep per-rank statistics.) The state_dict keys
    are those of plain ``BatchNorm``, so saved weights load into the unwrapped network.
    """
    if not active():
        return model
    if device.type == "cuda":
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index], output_device=device.index
        )
    return torch.nn.parallel.DistributedDataParallel(model)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The network inside a DDP wrapper (its ``state_dict`` has no ``module.`` prefix)."""
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


def per_rank_batch(batch_size: int) -> int:
    """Images per step on each rank, so that all ranks together make ``batch_size``.

    Raises:
        ValueError: fewer images per batch than processes.
    """
    world = world_size()
    if batch_size < world:
        raise ValueError(
            f"train.batch_size {batch_size} is smaller than the {world} DDP processes; "
            "give each GPU at least one image per step"
        )
    if batch_size % world and is_main():
        log.warning(
            "train.batch_size %d is not a multiple of %d processes: %d images per step in all",
            batch_size,
            world,
            (batch_size // world) * world,
        )
    return batch_size // world


class DistributedWeightedSampler(Sampler[int]):
    """Weighted sampling with replacement, each rank taking every ``world``-th draw.

    Every rank draws the same sequence from ``(seed, epoch)`` and keeps its share, so the
    ranks together sample exactly what one process would with the same weights and seed.
    """

    def __init__(self, weights: torch.Tensor, num_samples: int, seed: int = 0) -> None:
        self.weights = torch.as_tensor(weights, dtype=torch.double)
        self.world, self.rank = world_size(), rank()
        self.num_samples = -(-num_samples // self.world)  # per rank, padded up
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator()
        generator.manual_seed(self.seed + self.epoch)
        draws = torch.multinomial(
            self.weights, self.num_samples * self.world, replacement=True, generator=generator
        )
        return iter(draws[self.rank :: self.world].tolist())

    def __len__(self) -> int:
        return self.num_samples


def sampler(
    dataset: Any, shuffle: bool = True, seed: int = 0, weights: Any = None
) -> Sampler[int] | None:
    """The training sampler of this rank, or None without DDP (the loader shuffles itself).

    Args:
        dataset: the training dataset.
        shuffle: shuffle every epoch (``DistributedSampler``; call ``set_epoch``).
        seed: shared by every rank, so the shards do not overlap.
        weights: sampling weight per item: draw with replacement instead
            (:class:`DistributedWeightedSampler`).
    """
    if not active():
        return None
    if weights is not None:
        return DistributedWeightedSampler(weights, len(dataset), seed=seed)
    return DistributedSampler(dataset, shuffle=shuffle, seed=seed, drop_last=False)


def barrier() -> None:
    """Wait for every rank (no-op without DDP)."""
    if active():
        dist.barrier()


def broadcast(value: Any) -> Any:
    """Rank 0's ``value`` (any picklable object) on every rank."""
    if not active():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_reduce_mean(value: float) -> float:
    """The mean of a number over all ranks."""
    if not active():
        return float(value)
    tensor = torch.tensor([float(value)], dtype=torch.float64, device=_collective_device())
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return float(tensor.item()) / dist.get_world_size()


def all_reduce_sum(value: float) -> float:
    """The sum of a number over all ranks."""
    if not active():
        return float(value)
    tensor = torch.tensor([float(value)], dtype=torch.float64, device=_collective_device())
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return float(tensor.item())


def _collective_device() -> torch.device:
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def parameter_digest(model: torch.nn.Module) -> str:
    """SHA-256 of the model's parameters (buffers left out: DDP re-broadcasts those)."""
    digest = hashlib.sha256()
    for name, param in unwrap(model).named_parameters():
        digest.update(name.encode())
        digest.update(param.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def check_replicas(model: torch.nn.Module) -> str:
    """Check that every rank holds the same parameters; returns their digest.

    Raises:
        RuntimeError: the ranks' parameters differ (the replicas diverged).
    """
    digest = parameter_digest(model)
    if not active():
        return digest
    digests: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(digests, digest)
    if len(set(digests)) != 1:
        raise RuntimeError(f"DDP replicas diverged: parameter digests per rank {digests}")
    if is_main():
        log.info("DDP: all %d ranks hold identical parameters (sha256 %s)", len(digests), digest)
    return digest


def processes(gpus: int, visible_devices: int) -> int:
    """How many training processes a job runs: ``$MEDCNN_DDP_PROCS``, else one per GPU.

    Args:
        gpus: GPUs the job asked for (``resources.train.gpu``).
        visible_devices: CUDA devices the job may use (claimed, or set by the scheduler).
    """
    if os.environ.get(PROCS_ENV):
        return max(1, int(os.environ[PROCS_ENV]))
    if gpus <= 1:
        return 1
    if visible_devices < gpus:
        log.warning(
            "the job asks for %d GPUs but sees %d: training on %d",
            gpus,
            visible_devices,
            visible_devices,
        )
    return max(1, min(gpus, visible_devices))


def should_relaunch(nproc: int) -> bool:
    """Whether this process should start ``nproc`` DDP processes (not when it is one)."""
    launched = os.environ.get(CHILD_ENV) or int(os.environ.get("WORLD_SIZE", "1")) > 1
    return nproc > 1 and not launched


def relaunch_command(nproc: int, argv: list[str], python: str) -> list[str]:
    """The ``torchrun`` command that runs ``medcnn <argv>`` in ``nproc`` processes on this node.

    ``--standalone`` picks a free rendezvous port on localhost, so two DDP jobs on one node
    do not collide.
    """
    return [
        python,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        "-m",
        "medcnn",
        *argv,
    ]


def die_with_parent() -> None:
    """In the child: be sent SIGTERM when this process dies, even by ``kill -9``.

    Otherwise torchrun and its ranks would go on training after the job was killed, on GPUs
    whose locks died with it.
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def run_ddp(argv: list[str], nproc: int) -> int:
    """Run ``medcnn <argv>`` again under ``torchrun`` in ``nproc`` processes; its exit code.

    SIGTERM/SIGINT/SIGHUP (a cancelled Snakemake or SLURM job) are passed on to torchrun,
    which stops every rank.
    """
    command = relaunch_command(nproc, argv, sys.executable)
    log.info("DDP: training in %d processes: %s", nproc, " ".join(command))
    proc = subprocess.Popen(
        command,
        env={**os.environ, CHILD_ENV: "1"},
        preexec_fn=die_with_parent,
    )
    forwarded = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
    previous = {s: signal.signal(s, lambda signum, _: proc.send_signal(signum)) for s in forwarded}
    try:
        code = proc.wait()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if code:
        log.error(
            "DDP training failed: torchrun exited with code %d (the failing rank and its "
            "error are above)",
            code,
        )
    return code
