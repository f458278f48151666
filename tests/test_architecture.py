"""Imports only go down (docs/architecture.md): read from the source with ``ast``.

Every ``import`` of a ``medcnn`` module counts, lazy ones inside functions included, because a
lazy import is still a dependency (it only hides a circle until the day it runs). The rules:

- no import circle between modules;
- a library package imports only packages of a lower layer (:data:`LAYERS`); the stage layer
  sits above the whole library, the CLI above the stages;
- a stage imports only earlier stages (:data:`STAGE_ORDER`) and the stage helpers;
- no module imports another module's private (``_name``) names.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "medcnn"

#: Layer of each top-level part of the package; a part imports only lower layers (and itself).
LAYERS = {
    "medcnn": -1,  # the package's __init__ (the version)
    "config": 0,
    "devices": 0,
    "io": 0,
    "demo": 0,
    "hardware": 1,
    "ingest": 1,
    "data": 1,
    "postprocess": 1,
    "transforms": 2,
    "models": 2,
    "metrics": 2,
    "planning": 3,
    "inference": 3,
    "saliency": 3,
    "report": 3,
    "train": 4,
    "stages": 5,
    "cli": 6,
    "__main__": 7,
}
#: Stages in pipeline order; a stage imports only those before it.
STAGE_ORDER = [
    "ingest",
    "preprocess",
    "split",
    "train",
    "evaluate",
    "predict",
    "saliency",
    "report",
]
#: Modules of the stage layer that every stage may use (they import no stage).
STAGE_HELPERS = {"layout", "resources", "subjects"}


def module_names() -> dict[str, Path]:
    names = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> list[tuple[str, str | None]]:
    """(imported module, imported name or None) for each medcnn import of a module."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(a.name, None) for a in node.names if a.name.split(".")[0] == "medcnn"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if source.split(".")[0] != "medcnn":
                continue
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                found.append((submodule, None) if submodule in modules else (source, alias.name))
    return [(m, n) for m, n in found if m != name]


def graph() -> tuple[dict[str, set[str]], list[tuple[str, str, str]]]:
    modules = module_names()
    edges: dict[str, set[str]] = {m: set() for m in modules}
    private = []
    for name, path in modules.items():
        for module, imported in imports_of(name, path, modules):
            edges[name].add(module)
            if imported and imported.startswith("_") and not imported.startswith("__"):
                private.append((name, module, imported))
    return edges, private


def part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "medcnn"


def stage(module: str) -> str | None:
    parts = module.split(".")
    return parts[2] if len(parts) > 2 and parts[1] == "stages" else None


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges.get(v, ()):
            if w not in edges:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


@pytest.fixture(scope="module")
def imports():
    return graph()


def test_every_part_of_the_package_has_a_layer(imports):
    edges, _ = imports
    assert sorted({part(m) for m in edges} - set(LAYERS)) == []


def test_no_import_circle(imports):
    edges, _ = imports
    assert circles(edges) == []


def test_library_imports_only_go_down(imports):
    edges, _ = imports
    upward = [
        f"{m} -> {t}"
        for m, targets in edges.items()
        for t in targets
        if part(t) != part(m) and LAYERS[part(t)] >= LAYERS[part(m)]
    ]
    assert upward == []


def test_a_stage_imports_only_earlier_stages(imports):
    edges, _ = imports
    assert set(STAGE_ORDER) | STAGE_HELPERS == {stage(m) for m in edges if stage(m)}
    later = []
    for m, targets in edges.items():
        for t in targets:
            here, there = stage(m), stage(t)
            if here is None or there is None or here == there:
                continue
            if here in STAGE_HELPERS or (
                there not in STAGE_HELPERS and STAGE_ORDER.index(there) > STAGE_ORDER.index(here)
            ):
                later.append(f"{m} -> {t}")
    assert later == []


def test_no_private_names_from_another_module(imports):
    _, private = imports
    assert private == []


def test_the_checks_catch_what_they_forbid():
    """The rules above on a made-up graph: each kind of fault is found."""
    assert circles({"a": {"b"}, "b": {"a"}, "c": set()}) == [["a", "b"]]
    assert part("medcnn.train.classifier") == "train" and part("medcnn") == "medcnn"
    assert stage("medcnn.stages.train.classification") == "train"
    assert stage("medcnn.stages") is None
