"""``precision: auto`` on a CPU: the check times passes on this process's CPU clock and takes
the fastest, so load from other processes (which only ever adds time) does not flip it."""

from __future__ import annotations

import torch

import medcnn.hardware as hardware

#: The fake CPU clock (module-level: the check times a deep copy of the model).
CLOCK = [0.0]


class Ticking(torch.nn.Module):
    """A linear layer whose passes advance the fake CPU clock: 1.0 s in fp32, 0.5 s under
    bf16 autocast, and once, in the second bf16 pass, 4 s more (a burst of other work)."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(4, 2)
        self.bf16_passes = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_autocast_enabled("cpu"):
            self.bf16_passes += 1
            CLOCK[0] += 0.5 + (4.0 if self.bf16_passes == 3 else 0.0)
        else:
            CLOCK[0] += 1.0
        return self.linear(x)


def test_auto_precision_takes_the_fastest_cpu_time_pass(monkeypatch):
    monkeypatch.setattr(hardware.time, "process_time", lambda: CLOCK[0])
    # The wall clock jumps by 10 s on every reading: a check that read it would see noise.
    wall = iter(range(0, 10**6, 10))
    monkeypatch.setattr(hardware.time, "perf_counter", lambda: float(next(wall)))
    model = Ticking()
    chosen, info = hardware.resolve_precision(
        "auto", torch.device("cpu"), model, torch.zeros(3, 4), repeats=3
    )
    assert info["seconds"] == {"fp32": 1.0, "bf16": 0.5}
    assert chosen == "bf16"
    assert "bf16 2.00x fp32" in info["reason"]
    # The probe is a copy: the training model itself was not run.
    assert model.bf16_passes == 0


def test_auto_precision_keeps_fp32_when_bf16_is_not_faster(monkeypatch):
    monkeypatch.setattr(hardware.time, "process_time", lambda: CLOCK[0])

    class Slow(Ticking):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            CLOCK[0] += 1.05 if torch.is_autocast_enabled("cpu") else 1.0
            return self.linear(x)

    chosen, info = hardware.resolve_precision(
        "auto", torch.device("cpu"), Slow(), torch.zeros(3, 4), repeats=3
    )
    assert chosen == "fp32"
    assert info["seconds"] == {"fp32": 1.0, "bf16": 1.05}
