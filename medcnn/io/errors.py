"""The error every reader raises for a file that cannot become an image."""

from __future__ import annotations


class DicomReadError(ValueError):
    """A file that cannot become an image; the message says why, for ``quarantine.tsv``.

    Readers of other formats (NIfTI, 2D images) raise subclasses, so one ``except`` catches
    every reader's refusal.
    """
