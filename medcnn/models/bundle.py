"""A trained model as one self-describing folder (weights, network, plans, metrics, checksum).

``{folder}/model.pt`` holds the ``state_dict`` only, loaded with ``weights_only=True`` so a
bundle from elsewhere cannot run code; ``bundle.json`` holds everything needed to use it and
the SHA-256 of the weights, checked on every load.
"""

from __future__ import annotations

import functools
import json
import platform
from pathlib import Path
from typing import Any

import torch

from medcnn import __version__
from medcnn.io.files import sha256_file
from medcnn.models.factory import build_network

WEIGHTS = "model.pt"
MANIFEST = "bundle.json"


class BundleError(ValueError):
    """A bundle folder is incomplete, corrupt or tampered with."""


def package_versions() -> dict[str, str]:
    """Versions of the packages a result depends on."""
    import monai
    import nibabel
    import numpy
    import pydicom

    return {
        "medcnn": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "monai": monai.__version__,
        "numpy": numpy.__version__,
        "nibabel": nibabel.__version__,
        "pydicom": pydicom.__version__,
    }


def save_bundle(folder: Path, model: torch.nn.Module, info: dict[str, Any]) -> dict[str, Any]:
    """Write ``model.pt`` and ``bundle.json``; returns the bundle description written.

    Args:
        folder: the bundle folder (created).
        model: the trained network.
        info: must hold ``name``, ``network`` (``{"name", "dims", "in_channels",
            "out_channels"}`` and, for segmentation networks, their settings: the keyword
            arguments of :func:`~medcnn.models.factory.build_network`) and ``plans``;
            anything else (labels, thresholds, metrics) is kept as given.
    """
    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / WEIGHTS
    tmp = weights.with_suffix(".part")
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, tmp)
    tmp.replace(weights)
    description = {
        **info,
        "weights": WEIGHTS,
        "weights_sha256": sha256_file(weights),
        "versions": package_versions(),
    }
    (folder / MANIFEST).write_text(json.dumps(description, indent=2, sort_keys=True) + "\n")
    return description


def load_bundle(folder: Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Load a bundle, verifying the weights' checksum; the network is in ``eval()`` mode.

    Raises:
        BundleError: missing files, a checksum mismatch or weights that do not fit.
    """
    try:
        description = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise BundleError(f"{folder}: cannot read {MANIFEST}: {exc}") from exc
    weights = folder / description.get("weights", WEIGHTS)
    if not weights.is_file():
        raise BundleError(f"{folder}: weights file {weights.name} is missing")
    actual = sha256_file(weights)
    if actual != description.get("weights_sha256"):
        raise BundleError(
            f"{weights}: checksum {actual[:12]}… does not match the bundle's "
            f"{str(description.get('weights_sha256'))[:12]}… (truncated or modified)"
        )
    net = description["network"]
    try:
        # Keys beyond the four every network has (channels, strides, ...) are the settings
        # of a segmentation network.
        model = build_network(**net)
    except (TypeError, ValueError) as exc:
        raise BundleError(f"{folder}: cannot build network {net.get('name')!r}: {exc}") from exc
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except Exception as exc:
        raise BundleError(f"{weights}: cannot load weights: {exc}") from exc
    model.eval()
    return model, description


@functools.lru_cache(maxsize=16)
def _cached(folder: str, weights_mtime_ns: int) -> tuple[torch.nn.Module, dict[str, Any]]:
    return load_bundle(Path(folder))


def load_bundle_cached(folder: Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    """:func:`load_bundle`, once per process: a batch job predicts many subjects with it.

    Keyed by the folder and the weights' modification time, so a bundle replaced while the
    process runs is loaded (and verified) again. Callers must not modify the model.
    """
    folder = Path(folder).resolve()
    try:
        stamp = (folder / WEIGHTS).stat().st_mtime_ns
    except OSError:
        stamp = -1
    return _cached(str(folder), stamp)


def ensemble_summary(bundles: list[tuple[torch.nn.Module, dict[str, Any]]]) -> dict[str, Any]:
    """What a prediction records of the fold bundles it used: the model's name (the first
    fold's, without ``-fold<k>``), each fold's name and weights hash."""
    return {
        "name": bundles[0][1]["name"].rsplit("-fold", 1)[0],
        "folds": [d["name"] for _, d in bundles],
        "weights_sha256": [d["weights_sha256"] for _, d in bundles],
    }
