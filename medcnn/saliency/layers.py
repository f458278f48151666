"""Choose the target layer of class activation maps for any network.

A CAM needs the activation of the last layer that still has a spatial grid: later layers
have been pooled (no "where" left), earlier ones carry less class evidence. Known networks
name theirs in :data:`medcnn.models.factory.CAM_LAYERS`; for any other network the layer is
found by running one probe input and watching which modules return spatial feature maps.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from medcnn.models.factory import CAM_LAYERS


def _named(model: torch.nn.Module) -> dict[str, torch.nn.Module]:
    return dict(model.named_modules())


def spatial_layers(model: torch.nn.Module, in_channels: int, spatial: Sequence[int]) -> list[str]:
    """Leaf modules, in execution order, whose output is a spatial feature map.

    Args:
        model: the network (its mode is restored afterwards).
        in_channels: input channels.
        spatial: probe size per spatial axis, e.g. ``(64, 64)`` or ``(32, 32, 32)``; small
            is enough, but it must survive the network's downsampling.

    Returns:
        Dotted module names, as :class:`monai.visualize.GradCAM` takes them, of the
        modules whose output is ``(B, C, *spatial)`` with more than one position.
    """
    order: list[str] = []
    dims = len(spatial)
    hooks = []

    def hook(name: str):
        def record(_module, _inputs, output) -> None:
            if (
                isinstance(output, torch.Tensor)
                and output.ndim == dims + 2
                and any(s > 1 for s in output.shape[2:])
            ):
                order.append(name)

        return record

    for name, module in model.named_modules():
        # leaves only: a container's output is its last leaf's, and naming the leaf keeps
        # the hook on the tensor GradCAM will actually see.
        if name and not any(True for _ in module.children()):
            hooks.append(module.register_forward_hook(hook(name)))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros((1, in_channels, *spatial)))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return order


def probe_target_layer(model: torch.nn.Module, in_channels: int, spatial: Sequence[int]) -> str:
    """The last module, in execution order, whose output is a spatial feature map.

    Raises:
        ValueError: no module returns a feature map with more than one position, so there
            is nothing a CAM could localise.
    """
    order = spatial_layers(model, in_channels, spatial)
    if not order:
        raise ValueError(
            f"{type(model).__name__}: no layer returns a spatial feature map for a "
            f"{tuple(spatial)} input; set tasks.<task>.saliency.target_layer"
        )
    return order[-1]


def target_layer(
    model: torch.nn.Module,
    network: str,
    in_channels: int,
    spatial: Sequence[int],
    override: str | None = None,
) -> str:
    """The CAM target layer: the configured one, else the network's known one, else probed.

    The known layer is taken only when it still has a spatial grid at this input size (a
    DenseNet121 pools a 32-pixel input down to 1x1 there, and a CAM of one position is
    flat); otherwise the last layer that does is probed for.

    Raises:
        ValueError: the override is not a module of ``model``, or no layer is spatial.
    """
    if override is not None:
        modules = _named(model)
        if override not in modules:
            known = ", ".join(n for n in modules if n)[:400]
            raise ValueError(
                f"target layer {override!r} is not a module of {network} (has: {known} …)"
            )
        return override
    order = spatial_layers(model, in_channels, spatial)
    if CAM_LAYERS.get(network) in order:
        return CAM_LAYERS[network]
    return probe_target_layer(model, in_channels, spatial)
