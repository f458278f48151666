#!/usr/bin/env python3
"""Regenerate the configuration reference (docs/configuration.md) from the schema, between
the markers."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from medcnn.config import reference_markdown

REFERENCE = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"
START, END = "<!-- config-reference:start -->", "<!-- config-reference:end -->"


def render(text: str) -> str:
    """The reference page's text with the table replaced by the current schema's."""
    pattern = re.compile(re.escape(START) + r".*?" + re.escape(END), re.S)
    if not pattern.search(text):
        raise SystemExit(f"{REFERENCE}: markers {START} … {END} not found")
    return pattern.sub(lambda _: f"{START}\n{reference_markdown()}{END}", text)


if __name__ == "__main__":
    REFERENCE.write_text(render(REFERENCE.read_text()))
    sys.exit(0)
