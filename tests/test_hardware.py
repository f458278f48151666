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


class FakeCompiled(torch.nn.Module):
    """What the monkeypatched ``torch.compile`` returns: the same network, whose passes
    advance the fake CPU clock by ``cost`` instead of 1.0 (or raise, like a machine
    without a C++ compiler)."""

    def __init__(self, model: torch.nn.Module, cost: float | None) -> None:
        super().__init__()
        self.model, self.cost = model, cost

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.cost is None:
            raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found")
        CLOCK[0] += self.cost
        return self.model.linear(x)


class Counted(torch.nn.Module):
    """A linear layer with a batch-norm whose eager passes cost 1.0 s of fake CPU time."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(4, 2)
        self.norm = torch.nn.BatchNorm1d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        CLOCK[0] += 1.0
        return self.norm(self.linear(x))


def _compile_case(monkeypatch, cost: float | None, setting="auto", budget=20.0, device="cpu"):
    monkeypatch.setattr(hardware.time, "process_time", lambda: CLOCK[0])
    monkeypatch.setattr(torch, "compile", lambda model, **kw: FakeCompiled(model, cost))
    model = Counted().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(5, 4, generator=torch.Generator().manual_seed(0))

    def train_pass(forward):
        forward(x).sum().backward()

    forward, info = hardware.resolve_compile(
        setting, torch.device(device), model, train_pass, budget
    )
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "the passes moved the model"
    assert all(p.grad is None for p in model.parameters())
    return model, forward, info


def test_compile_auto_keeps_the_compiled_network_when_it_is_faster(monkeypatch):
    model, forward, info = _compile_case(monkeypatch, cost=0.6)
    assert isinstance(forward, FakeCompiled) and forward.model is model
    assert info["compiled"] is True
    assert info["seconds"] == {"eager": 1.0, "compiled": 0.6}
    assert "compiled 1.67x eager" in info["reason"]


def test_compile_auto_stays_eager_when_compiling_does_not_pay(monkeypatch):
    model, forward, info = _compile_case(monkeypatch, cost=0.95)
    assert forward is model
    assert info["compiled"] is False
    assert "compiled 1.05x eager" in info["reason"]


def test_compile_auto_skips_short_budgets_and_gpus_and_false(monkeypatch):
    for kwargs, reason in (
        ({"budget": 5.0}, "under 10 minutes"),
        ({"budget": None}, "under 10 minutes"),
        ({"device": "cuda"}, "only on a CPU"),
        ({"setting": False}, "configured"),
    ):
        model, forward, info = _compile_case(monkeypatch, cost=0.1, **kwargs)
        assert forward is model, kwargs
        assert reason in info["reason"], (kwargs, info)


def test_compile_true_is_untimed_and_a_failed_compile_trains_eager(monkeypatch, caplog):
    model, forward, info = _compile_case(monkeypatch, cost=2.0, setting=True, budget=None)
    assert isinstance(forward, FakeCompiled)
    assert info["compiled"] is True and "seconds" not in info
    model, forward, info = _compile_case(monkeypatch, cost=None, setting=True)
    assert forward is model
    assert "compile failed, training eager: RuntimeError: InvalidCxxCompiler" in info["reason"]
    assert "compile failed" in caplog.text
