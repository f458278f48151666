"""Build MONAI networks by name (classifiers, segmentation U-Nets), and know a classifier's
layer for CAM.

Every network is randomly initialised here: nothing is downloaded (MONAI's ``pretrained``
flags fetch from the internet, which a hospital workstation may not reach). Initial weights
come from a local file instead, through :func:`load_initial_weights`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from monai.networks import nets

log = logging.getLogger(__name__)


def _densenet(cls: type) -> Callable[[int, int, int], torch.nn.Module]:
    return lambda dims, cin, cout: cls(spatial_dims=dims, in_channels=cin, out_channels=cout)


def _resnet(func: Callable[..., torch.nn.Module]) -> Callable[[int, int, int], torch.nn.Module]:
    return lambda dims, cin, cout: func(
        spatial_dims=dims, n_input_channels=cin, num_classes=cout, pretrained=False
    )


def _efficientnet(variant: str) -> Callable[[int, int, int], torch.nn.Module]:
    return lambda dims, cin, cout: nets.EfficientNetBN(
        variant, pretrained=False, spatial_dims=dims, in_channels=cin, num_classes=cout
    )


#: name -> builder(dims, in_channels, out_channels)
BUILDERS: dict[str, Callable[[int, int, int], torch.nn.Module]] = {
    "densenet121": _densenet(nets.DenseNet121),
    "densenet169": _densenet(nets.DenseNet169),
    "densenet201": _densenet(nets.DenseNet201),
    "resnet18": _resnet(nets.resnet18),
    "resnet34": _resnet(nets.resnet34),
    "resnet50": _resnet(nets.resnet50),
    "seresnet50": lambda dims, cin, cout: nets.SEResNet50(
        spatial_dims=dims, in_channels=cin, num_classes=cout, pretrained=False
    ),
    **{f"efficientnet-b{k}": _efficientnet(f"efficientnet-b{k}") for k in range(4)},
}

#: The last convolutional stage's activation: where Grad-CAM has the most spatial detail
#: that still carries class evidence.
CAM_LAYERS = {
    "densenet121": "class_layers.relu",
    "densenet169": "class_layers.relu",
    "densenet201": "class_layers.relu",
    "resnet18": "layer4",
    "resnet34": "layer4",
    "resnet50": "layer4",
    "seresnet50": "layer4",
    # _bn1, not _swish: EfficientNet reuses one _swish module, whose hook would fire twice.
    **{f"efficientnet-b{k}": "_bn1" for k in range(4)},
}


def _unet(dims: int, cin: int, cout: int, **kw: Any) -> torch.nn.Module:
    return nets.UNet(
        spatial_dims=dims,
        in_channels=cin,
        out_channels=cout,
        channels=tuple(kw.get("channels", (32, 64, 128, 256))),
        strides=tuple(
            tuple(s) if isinstance(s, (list, tuple)) else s
            for s in kw.get("strides", (2,) * (len(kw.get("channels", (0,) * 4)) - 1))
        ),
        num_res_units=int(kw.get("num_res_units", 2)),
        norm=kw.get("norm", "instance"),
        dropout=float(kw.get("dropout", 0.0)),
    )


def _dynunet(dims: int, cin: int, cout: int, **kw: Any) -> torch.nn.Module:
    strides = kw.get("strides", [[1] * dims, *[[2] * dims] * 4])
    return nets.DynUNet(
        spatial_dims=dims,
        in_channels=cin,
        out_channels=cout,
        kernel_size=kw.get("kernel_size", [[3] * dims] * len(strides)),
        strides=strides,
        upsample_kernel_size=kw.get("upsample_kernel_size", strides[1:]),
        filters=kw.get("filters"),
        norm_name=kw.get("norm_name", "instance"),
        res_block=bool(kw.get("res_block", True)),
    )


def _segresnet(dims: int, cin: int, cout: int, **kw: Any) -> torch.nn.Module:
    return nets.SegResNet(
        spatial_dims=dims,
        in_channels=cin,
        out_channels=cout,
        init_filters=int(kw.get("init_filters", 16)),
        blocks_down=tuple(kw.get("blocks_down", (1, 2, 2, 4))),
        blocks_up=tuple(kw.get("blocks_up", (1, 1, 1))),
        dropout_prob=kw.get("dropout_prob"),
    )


#: Segmentation networks: name -> builder(dims, in_channels, out_channels, **settings), the
#: settings being the rest of the plans' ``network`` dict (channels, strides, ...).
SEGMENTATION_BUILDERS: dict[str, Callable[..., torch.nn.Module]] = {
    "unet": _unet,
    "dynunet": _dynunet,
    "segresnet": _segresnet,
}


def build_network(
    name: str, dims: int, in_channels: int, out_channels: int, **settings: Any
) -> torch.nn.Module:
    """A freshly initialised network.

    Args:
        name: one of :data:`BUILDERS` (``densenet121``, ``resnet18``, ``seresnet50``,
            ``efficientnet-b0``, ...) or :data:`SEGMENTATION_BUILDERS` (``unet``,
            ``dynunet``, ``segresnet``).
        dims: spatial dimensions (2 or 3).
        in_channels: image channels (1 for a radiograph).
        out_channels: logits (1 for a binary finding, one per class or finding otherwise;
            segmentation: one per class, background included).
        **settings: segmentation networks only: ``channels``/``strides``/``num_res_units``/
            ``norm`` (unet), ``kernel_size``/``strides``/``upsample_kernel_size``/``filters``
            (dynunet), ``init_filters``/``blocks_down``/``blocks_up`` (segresnet).

    Raises:
        ValueError: unknown network name, or settings given to a classifier.
    """
    if name in SEGMENTATION_BUILDERS:
        return SEGMENTATION_BUILDERS[name](dims, in_channels, out_channels, **settings)
    try:
        builder = BUILDERS[name]
    except KeyError:
        known = ", ".join([*BUILDERS, *SEGMENTATION_BUILDERS])
        raise ValueError(f"unknown network {name!r} (known: {known})") from None
    if settings:
        raise ValueError(f"network {name!r} takes no settings (got {', '.join(settings)})")
    return builder(dims, in_channels, out_channels)


def load_initial_weights(model: torch.nn.Module, path: str | Path) -> dict[str, Any]:
    """Copy the tensors of a local weights file into ``model`` where they fit.

    Accepts a ``state_dict`` or a checkpoint holding one under ``state_dict`` or ``model``
    (a ``module.`` prefix from DataParallel/DDP is dropped). A first convolution trained on
    RGB (``(out, 3, ...)``) meets a one-channel network by summing over its input channels,
    which gives a grey image the response the RGB network gave that grey image. Tensors
    whose shapes still differ (another head: 14 ChestX-ray14 findings for a binary task) are
    skipped, so the head starts fresh.

    Args:
        model: the freshly built network, modified in place.
        path: the weights file (``torch.load`` with ``weights_only=True``: it cannot run code).

    Returns:
        ``{"path", "loaded", "adapted", "skipped", "missing"}``: names of the tensors (counts
        of loaded and missing only).

    Raises:
        ValueError: the file is missing, unreadable, or has no tensor that fits.
    """
    path = Path(path)
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, ValueError) as exc:
        raise ValueError(f"{path}: cannot read initial weights: {exc}") from exc
    if isinstance(blob, dict):
        for key in ("state_dict", "model"):
            if isinstance(blob.get(key), dict):
                blob = blob[key]
                break
    if not isinstance(blob, dict):
        raise ValueError(f"{path}: not a state_dict (found {type(blob).__name__})")
    source = {k.removeprefix("module."): v for k, v in blob.items() if torch.is_tensor(v)}
    target = model.state_dict()
    new, adapted, skipped = {}, [], []
    for name, tensor in source.items():
        if name not in target:
            skipped.append(name)
            continue
        want = target[name]
        if tensor.shape == want.shape:
            new[name] = tensor.to(want.dtype)
        elif (
            tensor.ndim == want.ndim >= 3
            and tensor.shape[0] == want.shape[0]
            and tensor.shape[2:] == want.shape[2:]
            and want.shape[1] == 1
        ):
            new[name] = tensor.sum(dim=1, keepdim=True).to(want.dtype)
            adapted.append(name)
        else:
            skipped.append(name)
    if not new:
        raise ValueError(f"{path}: no tensor fits the network (is it for another model?)")
    missing = [k for k in target if k not in new]
    model.load_state_dict({**target, **new})
    log.info(
        "initial weights %s: %d tensors loaded (%d adapted), %d skipped, %d left as initialised",
        path,
        len(new),
        len(adapted),
        len(skipped),
        len(missing),
    )
    return {
        "path": str(path),
        "loaded": len(new),
        "adapted": adapted,
        "skipped": skipped,
        "missing": len(missing),
    }


def cam_layer(name: str, override: str | None = None) -> str:
    """The target layer for CAM methods: the override when given, else the network's default."""
    return override or CAM_LAYERS[name]
