"""Run one decode in a worker process with a time limit and a memory cap.

A pure-Python alarm cannot interrupt a codec stuck in C, and a ``MemoryError`` may come too
late (after the machine swaps): so the work runs in a forked child whose address space is
capped (``RLIMIT_AS``) and which is killed when it overruns its time. The result (arrays
included) comes back pickled through a pipe. Without ``fork`` (or with ``isolate`` off) the
work runs in-process, bounded only by the size checks made before it.
"""

from __future__ import annotations

import multiprocessing
import os
import resource
import traceback
from collections.abc import Callable
from typing import Any, TypeVar

from medcnn.io.errors import DicomReadError
from medcnn.io.limits import Limits

T = TypeVar("T")


class DecodeLimitError(DicomReadError):
    """The decode ran out of time or memory, or its worker died."""


def _address_space() -> int:
    """Bytes of address space this process has mapped now (Linux; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _child(conn: Any, memory_bytes: int, func: Callable[..., Any], args: tuple) -> None:
    try:
        if memory_bytes:
            cap = _address_space() + memory_bytes
            resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
        result = func(*args)
        conn.send(("ok", result))
    except MemoryError:
        conn.send(("memory", ""))
    except BaseException as exc:  # noqa: BLE001 - everything goes back to the parent
        message = str(exc) if isinstance(exc, DicomReadError) else f"{type(exc).__name__}: {exc}"
        conn.send(("error", (isinstance(exc, DicomReadError), message, traceback.format_exc())))
    finally:
        conn.close()


def _in_process(func: Callable[..., T], args: tuple) -> T:
    """``func(*args)`` here, its errors reported as the worker reports them."""
    try:
        return func(*args)
    except DicomReadError:
        raise
    except Exception as exc:  # the same message as from the worker
        raise DicomReadError(f"{type(exc).__name__}: {exc}") from exc


def run_bounded(func: Callable[..., T], args: tuple, limits: Limits, isolate: bool = True) -> T:
    """``func(*args)`` in a worker bounded by ``limits`` (in-process when not isolating:
    ``limits.isolate`` off, or ``isolate`` false for work already bounded by its caller, such
    as native pixel data whose size was checked against the bytes present).

    Raises:
        DecodeLimitError: out of time or memory, or the worker died.
        DicomReadError: what ``func`` raised, its message kept (other exception types
            arrive as a DicomReadError naming the type).
    """
    if not (isolate and limits.isolate) or "fork" not in multiprocessing.get_all_start_methods():
        return _in_process(func, args)
    context = multiprocessing.get_context("fork")
    parent, child = context.Pipe(duplex=False)
    memory = int(limits.decode_memory_mb) << 20
    process = context.Process(target=_child, args=(child, memory, func, args), daemon=True)
    process.start()
    child.close()
    try:
        if not parent.poll(limits.decode_seconds):
            raise DecodeLimitError(
                f"decoding took longer than ingest.limits.decode_seconds "
                f"({limits.decode_seconds:g} s): stopped"
            )
        try:
            status, payload = parent.recv()
        except EOFError:
            process.join(1)
            raise DecodeLimitError(
                f"decoder died (exit code {process.exitcode}); a hostile or broken file"
            ) from None
    finally:
        if process.is_alive():
            process.kill()
        process.join()
        parent.close()
    if status == "ok":
        return payload
    if status == "memory":
        raise DecodeLimitError(
            f"decoding needed more than ingest.limits.decode_memory_mb "
            f"({limits.decode_memory_mb} MiB): stopped"
        )
    _, message, _ = payload
    raise DicomReadError(message)
