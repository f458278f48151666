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


def test_auto_precision_stops_timing_once_bf16_is_far_slower(monkeypatch):
    """Without bf16 units (a 2-core AVX2 CPU: 16.2 s against 1.6 s per DenseNet121 pass) the
    first timed round settles it; the two rounds left would cost half a minute."""
    monkeypatch.setattr(hardware.time, "process_time", lambda: CLOCK[0])
    passes = {"fp32": 0, "bf16": 0}

    class NoBf16Units(Ticking):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            bf16 = torch.is_autocast_enabled("cpu")
            passes["bf16" if bf16 else "fp32"] += 1
            CLOCK[0] += 10.0 if bf16 else 1.0
            return self.linear(x)

    chosen, info = hardware.resolve_precision(
        "auto", torch.device("cpu"), NoBf16Units(), torch.zeros(3, 4), repeats=3
    )
    assert chosen == "fp32"
    assert info["seconds"] == {"fp32": 1.0, "bf16": 10.0}
    assert "bf16 0.10x fp32" in info["reason"]
    # A warm-up pass and one timed pass each, not four.
    assert passes == {"fp32": 2, "bf16": 2}


def test_auto_precision_times_every_round_when_the_ratio_is_near_the_bar(monkeypatch):
    """At 0.6x (above half the 1.1x bar) a later, calmer pass could still matter: all
    three rounds run."""
    monkeypatch.setattr(hardware.time, "process_time", lambda: CLOCK[0])
    passes = {"bf16": 0}

    class Near(Ticking):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if torch.is_autocast_enabled("cpu"):
                passes["bf16"] += 1
                CLOCK[0] += 1.0 / 0.6
            else:
                CLOCK[0] += 1.0
            return self.linear(x)

    chosen, _ = hardware.resolve_precision(
        "auto", torch.device("cpu"), Near(), torch.zeros(3, 4), repeats=3
    )
    assert chosen == "fp32"
    assert passes["bf16"] == 4
