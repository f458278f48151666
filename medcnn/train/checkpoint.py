"""Resumable training: the checkpoint file, the digest that says whether it may be resumed,
and the random state that makes a resumed run continue exactly where it stopped.

Both training loops (classification and segmentation) use this one module.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

log = logging.getLogger(__name__)


CHECKPOINT = "checkpoint.pt"


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of one epoch's shuffling, sampling and augmentation."""
    return (seed * 1_000_003 + epoch) % (2**31 - 1)


def seed_epoch(
    seed: int,
    epoch: int,
    generator: torch.Generator,
    dataset: Any,
    sampler: Any = None,
    offset: int = 0,
) -> None:
    """Seed everything random in one epoch from ``(seed, epoch)`` alone, so that a resumed run
    replays the epochs it missed exactly: torch's global generator, the loader's
    ``generator`` (its workers reseed from it), the ``sampler``'s epoch (a DDP sampler's
    shuffle) and the random state of ``dataset``'s transforms, plus ``offset`` (a rank's own
    augmentation draws)."""
    torch.manual_seed(epoch_seed(seed, epoch))
    generator.manual_seed(epoch_seed(seed, epoch))
    if hasattr(sampler, "set_epoch"):
        sampler.set_epoch(epoch)
    dataset.transform.set_random_state(seed=epoch_seed(seed, epoch) + offset)


def cpu_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A copy of ``model``'s weights on the CPU (the best epoch's, kept for the end)."""
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def settings_digest(*parts: Any) -> str:
    """SHA-256 of the data and settings of a run; a checkpoint with another digest is not
    resumed."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    # Write then rename: a job killed while writing leaves the previous checkpoint whole.
    tmp = path.with_suffix(".part")
    torch.save(state, tmp)
    tmp.replace(path)


def load_checkpoint(path: Path, fingerprint: str) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated file from a full disk: start again, say why
        log.warning("%s: unreadable checkpoint (%s); training from the start", path, exc)
        return None
    if state.get("fingerprint") != fingerprint:
        log.warning(
            "%s: checkpoint is from another configuration or split; training from the start",
            path,
        )
        return None
    return state


def rng_state() -> dict[str, Any]:
    # Tensors and numbers only: the checkpoint is read back with weights_only=True.
    _, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "numpy": torch.as_tensor(keys.astype(np.int64)),
        "numpy_pos": int(pos),
        "numpy_gauss": [int(has_gauss), float(cached)],
    }


def set_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    keys = state["numpy"].numpy().astype(np.uint32)
    has_gauss, cached = state["numpy_gauss"]
    np.random.set_state(("MT19937", keys, int(state["numpy_pos"]), int(has_gauss), cached))


def training_state(
    fingerprint: str, epoch: int, resumable: Mapping[str, Any], **progress: Any
) -> dict[str, Any]:
    """What a checkpoint holds: the settings digest, the last epoch done, the ``state_dict``
    of each resumable part (model, optimiser, schedule, gradient scaler: ``resumable``) and
    the loop's own progress (history, best epoch, …)."""
    return {
        "fingerprint": fingerprint,
        "epoch": epoch,
        **{key: part.state_dict() for key, part in resumable.items()},
        **progress,
    }


def restore(state: Mapping[str, Any], resumable: Mapping[str, Any]) -> None:
    """Load each resumable part back from a checkpoint of :func:`training_state`."""
    for key, part in resumable.items():
        part.load_state_dict(state[key])


@dataclass
class Checkpointer:
    """Writes a loop's checkpoint after each epoch (when ``enabled``, ``train.checkpoint``):
    :func:`training_state` of the ``resumable`` parts, the loop's progress, then ``extra``
    (what the run chose once, such as its precision)."""

    path: Path
    fingerprint: str
    resumable: Mapping[str, Any]
    extra: Mapping[str, Any]
    enabled: bool = True
    #: What writes the file (a loop passes its own module's name for it, which a test may
    #: replace to kill a run after an epoch).
    write: Callable[[Path, dict[str, Any]], None] = save_checkpoint

    def __call__(self, epoch: int, **progress: Any) -> None:
        if not self.enabled:
            return
        state = training_state(self.fingerprint, epoch, self.resumable, **progress, **self.extra)
        self.write(self.path, state)


def resume(state: Mapping[str, Any], resumable: Mapping[str, Any], path: Path) -> None:
    """Load the resumable parts back from the checkpoint ``state`` read from ``path``."""
    restore(state, resumable)
    log.info("resuming from %s after epoch %d", path, state["epoch"])
