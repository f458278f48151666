"""Every third-party module the code imports is declared in pyproject.toml.

A module that is on the developer's machine by hand, or only as another package's dependency,
imports here and fails on a user's fresh install. So: each module that ``medcnn/`` imports
(lazy imports inside functions included) must belong to a distribution in
``[project.dependencies]``; what ``tests/``, ``bench/`` and ``scripts/`` import beyond that must
be in the ``dev`` extra (``make test`` installs ``.[dev]``).
"""

from __future__ import annotations

import ast
import importlib.metadata as metadata
import re
import sys
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]
FIRST_PARTY = {"medcnn", "tests", "bench", "scripts"}
#: Import name -> distribution, for where the distribution is not installed (the check must
#: still name the right one) or its metadata does not list the module.
ALIASES = {
    "PIL": "pillow",
    "fpdf": "fpdf2",
    "gdcm": "python-gdcm",
    "jpeg_ls": "pyjpegls",
    "libjpeg": "pylibjpeg-libjpeg",
    "openjpeg": "pylibjpeg-openjpeg",
    "rle": "pylibjpeg-rle",
    "skimage": "scikit-image",
    "sklearn": "scikit-learn",
    "yaml": "pyyaml",
    "tomli": "tomli",
}


def canonical(name: str) -> str:
    """PEP 503 name: ``Scikit_Image`` and ``scikit-image`` are one distribution."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    return canonical(re.split(r"[\s;<>=!~\[(@]", requirement.strip(), maxsplit=1)[0])


def imports_of(source: str) -> set[str]:
    """Top-level names of the absolute imports anywhere in a module (functions included)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def third_party_imports(folder: Path) -> dict[str, list[str]]:
    """Module -> the files (relative to the repository) that import it."""
    found: dict[str, list[str]] = {}
    for path in sorted(folder.rglob("*.py")):
        for module in imports_of(path.read_text(encoding="utf-8")):
            if module in sys.stdlib_module_names or module in FIRST_PARTY:
                continue
            found.setdefault(module, []).append(path.relative_to(REPO).as_posix())
    return found


def distributions_of(module: str, installed: dict[str, list[str]]) -> set[str]:
    """The distributions that provide a top-level module (by this environment's metadata,
    else by the alias table, else the module's own name)."""
    owners = {canonical(d) for d in installed.get(module, [])}
    return owners or {canonical(ALIASES.get(module, module))}


def undeclared(folder: Path, allowed: set[str], installed: dict[str, list[str]]) -> list[str]:
    problems = []
    for module, files in sorted(third_party_imports(folder).items()):
        owners = distributions_of(module, installed)
        if not owners & allowed:
            problems.append(
                f"{module} (distribution {', '.join(sorted(owners))}) is imported in "
                f"{', '.join(files)} but not declared"
            )
    return problems


def declared() -> tuple[set[str], set[str]]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    core = {requirement_name(r) for r in project["dependencies"]}
    dev = {requirement_name(r) for r in project.get("optional-dependencies", {}).get("dev", [])}
    return core, dev


def test_the_package_imports_only_its_dependencies():
    core, _ = declared()
    problems = undeclared(REPO / "medcnn", core, metadata.packages_distributions())
    assert not problems, "add to [project.dependencies]:\n" + "\n".join(problems)


@pytest.mark.parametrize("folder", ["tests", "bench", "scripts"])
def test_tests_and_benchmarks_import_only_dependencies_or_dev(folder):
    core, dev = declared()
    problems = undeclared(REPO / folder, core | dev, metadata.packages_distributions())
    assert not problems, "add to the dev extra in pyproject.toml:\n" + "\n".join(problems)


def test_the_check_names_the_module_and_the_file(tmp_path, monkeypatch):
    """The check itself: lazy imports count, stdlib and relative imports do not, a module is
    matched through its distribution's name."""
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "a.py").write_text(
        "import os, json\nfrom . import b\nimport numpy.linalg\n"
        "def f():\n    import highdicom\n    from PIL import Image\n"
    )
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    installed = {"numpy": ["numpy"], "PIL": ["Pillow"]}
    problems = undeclared(package, {"numpy", "pillow"}, installed)
    assert problems == [
        "highdicom (distribution highdicom) is imported in pkg/a.py but not declared"
    ]
    assert undeclared(package, {"numpy", "pillow", "highdicom"}, installed) == []
    assert undeclared(package, {"numpy", "highdicom"}, {}) == [
        "PIL (distribution pillow) is imported in pkg/a.py but not declared"
    ]
