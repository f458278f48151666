"""The per-step extras of a training step, at the cost of the arithmetic they do.

Both are what PyTorch's own helpers compute, with less around it:

- :class:`ExponentialAverage` is ``torch.optim.swa_utils.AveragedModel`` with the EMA of
  ``get_ema_multi_avg_fn`` over parameters and buffers (``use_buffers=True``): the same
  module, state dict and values (a test compares them). ``AveragedModel.update_parameters``
  walks both models' modules at every step (3 ms for DenseNet121's thousand tensors),
  groups the tensors by device and dtype, and averages each integer buffer (a BatchNorm's
  ``num_batches_tracked``: DenseNet121 has 121) in its own Python loop: 9.3 ms a step on one
  core, where the arithmetic (one ``torch._foreach_lerp_`` over 7 million floats) is about 3.
  Here each tensor's place (its module's ``_parameters`` or ``_buffers`` and its name) is
  found once, the tensors are looked up there at each step, and the integer buffers are
  averaged together with foreach calls, as the same expression (``p * decay + q * (1 -
  decay)``, cast back): 4.7 ms.
- :func:`clip_gradients` is ``torch.nn.utils.clip_grad_norm_``, which multiplies every gradient
  by ``min(1, max_norm / (norm + 1e-6))`` at each step; on the CPU, where reading the norm
  costs no device synchronisation, the multiplication is skipped when that factor is 1 (the
  gradients are then the same bytes): 2.3 ms instead of 4.0 for DenseNet121's gradients.
  Elsewhere (CUDA) ``clip_grad_norm_`` itself runs, without a synchronisation per step.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


class ExponentialAverage(AveragedModel):
    """The exponential moving average of a model's weights and buffers, with ``decay``
    (see the module: ``AveragedModel`` with ``get_ema_multi_avg_fn(decay)``, ``use_buffers``)."""

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        super().__init__(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)
        self.decay = float(decay)
        self._slots: dict[int, list[tuple[dict, str]]] = {}

    @staticmethod
    def _slots_of(module: torch.nn.Module) -> list[tuple[dict, str]]:
        """Where each parameter, then each buffer, of ``module`` lives (the holding module's
        ``_parameters`` or ``_buffers`` and the name), in ``parameters()``, ``buffers()``
        order: walking a DenseNet121's modules costs 3 ms, a lookup in these 0.2 ms, and a
        tensor moved or replaced since (``.to``, ``load_state_dict``) is found where it is."""
        seen: set[int] = set()
        slots: list[tuple[dict, str]] = []
        for kind in ("_parameters", "_buffers"):
            for _, holder in module.named_modules(remove_duplicate=True):
                for name, tensor in getattr(holder, kind).items():
                    if tensor is not None and id(tensor) not in seen:
                        seen.add(id(tensor))
                        slots.append((getattr(holder, kind), name))
        return slots

    def _tensors(self, model: torch.nn.Module) -> tuple[list, list, list, list]:
        """(averaged floats, model floats, averaged others, model others)."""
        for module in (self.module, model):
            if id(module) not in self._slots:
                self._slots[id(module)] = self._slots_of(module)
        mine = [table[name] for table, name in self._slots[id(self.module)]]
        theirs = [table[name] for table, name in self._slots[id(model)]]
        if len(mine) != len(theirs):
            raise ValueError("the averaged model and the model differ in their tensors")
        avg_f, src_f, avg_o, src_o = [], [], [], []
        for a, b in zip(mine, theirs, strict=True):
            if b.device != a.device:
                b = b.to(a.device)
            if a.is_floating_point() or a.is_complex():
                avg_f.append(a)
                src_f.append(b)
            else:
                avg_o.append(a)
                src_o.append(b)
        return avg_f, src_f, avg_o, src_o

    @torch.no_grad()
    def update_parameters(self, model: torch.nn.Module) -> None:
        """One EMA step toward ``model``'s weights and buffers (the first copies them)."""
        avg_f, src_f, avg_o, src_o = self._tensors(model)
        if int(self.n_averaged) == 0:
            torch._foreach_copy_(avg_f + avg_o, src_f + src_o)
        else:
            if avg_f:
                torch._foreach_lerp_(avg_f, src_f, 1.0 - self.decay)
            if avg_o:  # as get_ema_multi_avg_fn: p.copy_(p * decay + q * (1 - decay))
                mixed = torch._foreach_add(
                    torch._foreach_mul(avg_o, self.decay),
                    torch._foreach_mul(src_o, 1.0 - self.decay),
                )
                torch._foreach_copy_(avg_o, mixed)
        self.n_averaged += 1


def clip_gradients(parameters: Iterable[torch.Tensor], max_norm: float) -> torch.Tensor:
    """``torch.nn.utils.clip_grad_norm_(parameters, max_norm)`` (its total norm returned),
    with the multiplication skipped on the CPU when it would multiply by 1 (the module)."""
    params = [p for p in parameters if p.grad is not None]
    total_norm = getattr(torch.nn.utils, "get_total_norm", None)
    scale = getattr(torch.nn.utils, "clip_grads_with_norm_", None)
    if not params or total_norm is None or scale is None or params[0].grad.device.type != "cpu":
        return torch.nn.utils.clip_grad_norm_(params, max_norm)
    norm = total_norm([p.grad for p in params], foreach=True)
    factor = float(max_norm) / (float(norm) + 1e-6)
    if not factor >= 1.0:  # over the limit, or a non-finite norm (scaled as torch does)
        scale(params, max_norm, norm, foreach=True)
    return norm
