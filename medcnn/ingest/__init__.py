"""Ingest: scan folders -> de-identified NIfTI, sidecars and the manifest.

Importing the package imports pydicom without ``requests``: pydicom imports it only to
download its own test files (it falls back on ``urllib`` there), and it costs every ingest
start some 50 ms. A later ``import requests`` elsewhere works as usual.
"""

from __future__ import annotations

import sys


def _import_pydicom() -> None:
    if "pydicom" in sys.modules or "requests" in sys.modules:
        return
    sys.modules["requests"] = None  # type: ignore[assignment]  # makes `import requests` fail
    try:
        import pydicom  # noqa: F401
    finally:
        if sys.modules.get("requests", False) is None:
            del sys.modules["requests"]


_import_pydicom()
