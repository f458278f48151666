"""Ingest: scan folders -> de-identified NIfTI, sidecars and the manifest.

Importing the package imports pydicom without ``requests`` (:mod:`medcnn.io.codecs`: pydicom
imports it only to download its own test files, and it costs every ingest start some 50 ms);
``medcnn ingest`` also defers pydicom's codec libraries until a file needs one. A later
``import requests`` elsewhere works as usual.
"""

from __future__ import annotations

from medcnn.io.codecs import import_pydicom

import_pydicom()
