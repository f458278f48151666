"""The Makefile's install logic: a project .venv/ by default, a named environment with PYTHON,
and a torch that is already there is kept (a GPU user's CUDA build)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
INHERITED = {"MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "PYTHON", "VENV", "TORCH"}

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="no make")

#: A stand-in interpreter: records each call; `import torch` succeeds when HAS_TORCH is set.
FAKE_PYTHON = """#!/bin/sh
echo "$@" >> "$(dirname "$0")/calls.log"
case "$*" in
  *"import torch"*) [ -n "$HAS_TORCH" ] && exit 0 || exit 1 ;;
esac
exit 0
"""


def fake_env(tmp_path: Path) -> Path:
    python = tmp_path / "env" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(FAKE_PYTHON)
    python.chmod(0o755)
    return python


def make(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """``make`` on the repository's Makefile, free of what the make running pytest (``make
    test``, with its own PYTHON or VENV) would pass down."""
    clean = {k: v for k, v in os.environ.items() if k not in INHERITED}
    return subprocess.run(
        ["make", "--no-print-directory", "-C", str(REPO), *args],
        capture_output=True,
        text=True,
        env=clean if env is None else env,
    )


def calls(python: Path) -> list[str]:
    return python.with_name("calls.log").read_text().splitlines()


def test_named_environment_with_its_own_torch_keeps_it(tmp_path):
    python = fake_env(tmp_path)
    env = {"PATH": "/usr/bin:/bin", "HAS_TORCH": "1"}
    result = make("install", f"PYTHON={python}", env=env)
    assert result.returncode == 0, result.stderr
    assert "keeping the installed torch" in result.stdout
    installs = [c for c in calls(python) if c.startswith("-m pip install")]
    assert installs == ["-m pip install -e ."]


def test_named_environment_without_torch_gets_the_pinned_cpu_build(tmp_path):
    python = fake_env(tmp_path)
    result = make("install", f"PYTHON={python}", env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    installs = [c for c in calls(python) if c.startswith("-m pip install")]
    assert installs == ["-m pip install torch==2.13.0", "-m pip install -e ."]


def test_no_python_given_makes_and_uses_a_project_venv():
    """Dry run: the venv is made with python3, then everything goes through its interpreter."""
    venv = "/nonexistent/medcnn-venv"
    result = make("-n", "demo", f"VENV={venv}")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    made = next(i for i, line in enumerate(lines) if f"python3 -m venv {venv}" in line)
    rest = "\n".join(lines[made + 1 :])
    assert f"{venv}/bin/python -m pip install -e ." in rest
    assert f"{venv}/bin/python -m snakemake --cores 2" in rest
    assert " pip install" not in "\n".join(lines[:made])


def test_an_existing_venv_is_not_made_again(tmp_path):
    python = fake_env(tmp_path)  # tmp/env/bin/python: an existing venv at tmp/env
    result = make("-n", "install", f"VENV={python.parent.parent}")
    assert result.returncode == 0, result.stderr
    assert "-m venv" not in result.stdout
    assert f"{python} -m pip install -e ." in result.stdout
