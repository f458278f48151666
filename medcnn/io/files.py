"""File helpers: opening regular files only, checksums (ingest sources, bundle weights) and
JSON-safe values."""

from __future__ import annotations

import hashlib
import math
import os
import stat
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB chunks (memory stays flat)."""
    digest = hashlib.sha256()
    with open_regular(path) as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def finite(value: Any) -> Any:
    """``value`` as strict JSON can hold it: NaN and infinities become None, numpy scalars
    Python numbers, tuples lists, dict keys strings (nested, recursively)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


class NotRegularFileError(OSError):
    """A path that is not a regular file (FIFO, device, socket, folder): never read."""


def open_regular(path: Path) -> BinaryIO:
    """Open a regular file for binary reading, refusing FIFOs, devices and sockets.

    The file is opened non-blocking (so a FIFO cannot stall ``open``) and checked with
    ``fstat`` on the open descriptor, so a file swapped for a FIFO or a link to ``/dev/zero``
    after discovery is still refused.

    Raises:
        NotRegularFileError: the path is not a regular file.
        OSError: it cannot be opened.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegularFileError(f"not a regular file ({file_kind(mode)})")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "rb")


def file_kind(mode: int) -> str:
    """What an ``st_mode`` describes, in words (for skip reasons)."""
    for test, name in (
        (stat.S_ISREG, "regular file"),
        (stat.S_ISDIR, "folder"),
        (stat.S_ISFIFO, "FIFO"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISLNK, "symlink"),
    ):
        if test(mode):
            return name
    return "special file"
