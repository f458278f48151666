"""Ingest's worker processes: the header pass and the series conversions, in parallel.

``ingest.workers`` processes (forked, so they start in milliseconds and share what the
parent has loaded) read headers in chunks of files and convert one series per task. Every
task returns what it added to the run's :class:`~medcnn.ingest.context.Context` (entries,
fates, manifest rows, grids, mapping rows, identifiers seen) and the log records it made;
the parent merges them in input order, so the outputs are those of a run in one process.

A task is isolated as in one process (:meth:`Context.isolated`, the bounded decoder of
:mod:`medcnn.io.bounded`); beyond that, a worker that dies outright (a codec crashing the
interpreter, the kernel's out-of-memory killer) breaks only the tasks it held: they are run
again one at a time, each in a fresh worker, and a task whose worker dies alone is
quarantined with that reason, so the batch goes on.
"""

from __future__ import annotations

import importlib
import logging
import multiprocessing
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from typing import Any

log = logging.getLogger("medcnn.ingest.pipeline")

#: What the forked workers inherit from the parent (set before the pool starts).
_SHARED: dict[str, Any] = {}


def resolve_workers(setting: int, threads: int | None, default_threads: int) -> int:
    """Worker processes of a run: ``ingest.workers``, or else the job's threads.

    Args:
        setting: ``ingest.workers`` (0: the job's threads).
        threads: ``medcnn ingest --threads`` (the rule's threads), None when not given.
        default_threads: ``resources.ingest.threads``.
    """
    if setting > 0:
        return setting
    return max(1, threads if threads else default_threads)


class _Collector(logging.Handler):
    """Keeps a worker's log records, to be handled again in the parent."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        # Made picklable: the message formatted here, the traceback as text.
        if record.exc_info:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        record.msg, record.args = record.getMessage(), None
        self.records.append(record)


def _in_worker(func: Callable[..., Any], payload: Any) -> tuple[Any, list[logging.LogRecord]]:
    """``func(payload)`` with the log records it makes collected (in a worker process)."""
    root = logging.getLogger()
    collector = _Collector()
    saved = root.handlers[:]
    root.handlers = [collector]
    try:
        return func(payload), collector.records
    finally:
        root.handlers = saved


def _replay(records: list[logging.LogRecord]) -> None:
    for record in records:
        logging.getLogger(record.name).handle(record)


class Workers:
    """A pool of forked workers (or none: ``count`` 1 runs every task in this process).

    Args:
        count: worker processes.
        shared: what the tasks read from :data:`_SHARED` (the context, tables), inherited
            by the workers when they fork.
        preload: modules the tasks import lazily, imported before the workers fork.
    """

    def __init__(self, count: int, shared: dict[str, Any], preload: Sequence[str] = ()) -> None:
        self.count = count if "fork" in multiprocessing.get_all_start_methods() else 1
        _SHARED.clear()
        _SHARED.update(shared)
        self._pool: ProcessPoolExecutor | None = None
        self._preload = tuple(preload)

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def _new_pool(self, count: int) -> ProcessPoolExecutor:
        for module in self._preload:  # imported once here, not once in every worker
            importlib.import_module(module)
        return ProcessPoolExecutor(count, mp_context=multiprocessing.get_context("fork"))

    def run(
        self,
        func: Callable[[Any], Any],
        payloads: Sequence[Any],
        on_crash: Callable[[Any, str], Any],
    ) -> Iterator[tuple[int, Any]]:
        """``(index, func(payload))`` for every payload, in the order they finish.

        ``func`` must be a module-level function (workers receive it pickled by name).
        ``on_crash(payload, reason)`` gives the result of a task whose worker died alone.
        """
        if self.count <= 1 or len(payloads) <= 1:
            for index, payload in enumerate(payloads):
                yield index, func(payload)
            return
        if self._pool is None:
            self._pool = self._new_pool(self.count)
        futures: dict[Future, int] = {
            self._pool.submit(_in_worker, func, p): i for i, p in enumerate(payloads)
        }
        broken: list[int] = []
        for future in as_completed(futures):
            index = futures[future]
            try:
                result, records = future.result()
            except BrokenProcessPool:
                broken.append(index)
                continue
            _replay(records)
            yield index, result
        if broken:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
            log.warning("an ingest worker died: %d task(s) run again one at a time", len(broken))
            for index in sorted(broken):
                yield index, self._alone(func, payloads[index], on_crash)

    def _alone(self, func: Callable[[Any], Any], payload: Any, on_crash: Callable) -> Any:
        """One task in a fresh worker of its own; ``on_crash`` when that worker dies too."""
        with self._new_pool(1) as pool:
            future = pool.submit(_in_worker, func, payload)
            try:
                result, records = future.result()
            except BrokenProcessPool:
                return on_crash(payload, "its ingest worker process died (a crash in a decoder)")
        _replay(records)
        return result


def shared(name: str) -> Any:
    """What the parent shared with the workers (or with itself, in one process)."""
    return _SHARED[name]


def merge_grids(target: dict, grids: dict) -> None:
    """Add a task's grids to the run's (``(subject, study) -> [(shape, affine)]``)."""
    for key, items in grids.items():
        target.setdefault(key, []).extend(items)
