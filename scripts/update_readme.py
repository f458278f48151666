#!/usr/bin/env python3
"""Regenerate the README's configuration reference from the schema (between the markers)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from medcnn.config import reference_markdown

README = Path(__file__).resolve().parents[1] / "README.md"
START, END = "<!-- config-reference:start -->", "<!-- config-reference:end -->"


def render(text: str) -> str:
    """README text with the reference section replaced by the current schema's."""
    pattern = re.compile(re.escape(START) + r".*?" + re.escape(END), re.S)
    if not pattern.search(text):
        raise SystemExit(f"{README}: markers {START} … {END} not found")
    return pattern.sub(lambda _: f"{START}\n{reference_markdown()}{END}", text)


if __name__ == "__main__":
    README.write_text(render(README.read_text()))
    sys.exit(0)
