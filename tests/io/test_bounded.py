"""The decode worker: time limit, memory cap, a dying decoder, errors passed back."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from medcnn.io.bounded import DecodeLimitError, run_bounded
from medcnn.io.errors import DicomReadError
from medcnn.io.limits import Limits


def _sleep(seconds: float) -> str:
    time.sleep(seconds)
    return "done"


def _allocate(n_bytes: int) -> int:
    return int(np.ones(n_bytes, dtype=np.uint8).sum())


def _refuse() -> None:
    raise DicomReadError("bad header")


def _crash() -> None:
    raise KeyError("surprise")


def _die() -> None:
    os._exit(3)


def test_result_comes_back_from_the_worker():
    assert run_bounded(_allocate, (1000,), Limits()) == 1000
    assert run_bounded(np.arange, (5,), Limits()).tolist() == [0, 1, 2, 3, 4]


def test_a_decode_over_its_time_is_stopped():
    with pytest.raises(DecodeLimitError, match="decode_seconds"):
        run_bounded(_sleep, (30,), Limits(decode_seconds=0.5))


def test_a_decode_over_its_memory_is_stopped():
    with pytest.raises(DecodeLimitError, match="decode_memory_mb"):
        run_bounded(_allocate, (4 << 30,), Limits(decode_memory_mb=256))


def test_errors_come_back_with_their_reason():
    with pytest.raises(DicomReadError, match="^bad header$"):
        run_bounded(_refuse, (), Limits())
    with pytest.raises(DicomReadError, match="KeyError: 'surprise'"):
        run_bounded(_crash, (), Limits())
    with pytest.raises(DecodeLimitError, match="exit code 3"):
        run_bounded(_die, (), Limits())


def test_without_isolation_the_work_runs_here():
    assert run_bounded(os.getpid, (), Limits(isolate=False)) == os.getpid()
    assert run_bounded(os.getpid, (), Limits()) != os.getpid()


def test_work_bounded_by_its_caller_runs_here_with_the_workers_messages():
    assert run_bounded(os.getpid, (), Limits(), isolate=False) == os.getpid()
    with pytest.raises(DicomReadError, match="ValueError: bad"):
        run_bounded(_raise_value_error, (), Limits(), isolate=False)


def _raise_value_error():
    raise ValueError("bad")
