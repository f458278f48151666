"""The README stays true: the quick start and CI match, and the config reference
(docs/configuration.md) matches the schema."""

from __future__ import annotations

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()
REFERENCE = (REPO / "docs" / "configuration.md").read_text()


def test_config_reference_is_current():
    spec = importlib.util.spec_from_file_location(
        "update_readme", REPO / "scripts/update_readme.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.render(REFERENCE) == REFERENCE, "run: python scripts/update_readme.py"


def test_quick_start_has_the_two_commands_and_ci_runs_both():
    quick = README.split("## Quick start", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in quick.strip().splitlines()]
    assert commands == ["make demo", "make test"]
    ci = (REPO / ".ci" / "run").read_text()
    assert "make demo" in ci and "make test" in ci
