"""The Snakemake workflow catalog's conventions: ``snakemake --lint`` finds nothing, every
rule names its software environment (which lists what pyproject.toml declares), and
``snakemake --report`` packs the cohort report and its figures with their captions."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import yaml

from tests.conftest import REPO, run_from_repo

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib


def test_lint_finds_nothing():
    result = run_from_repo(REPO / "config" / "config.yaml", "--lint")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Congratulations, your workflow is in a good condition!" in result.stdout + result.stderr


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~; \[]", requirement, maxsplit=1)[0].lower()


def test_the_conda_environment_and_the_containers_install_the_declared_stack():
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    env = yaml.safe_load((REPO / "workflows" / "envs" / "medcnn.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    listed = {_name(p) for p in pip if not p.startswith("-")}
    assert {_name(d) for d in declared} <= listed, {_name(d) for d in declared} - listed
    for rules in (REPO / "workflows" / "rules").glob("*.smk"):
        text = rules.read_text()
        n_rules = len(re.findall(r"^\s*(?:rule|checkpoint) \w+:", text, flags=re.M))
        n_shell = len(re.findall(r"^\s*shell:", text, flags=re.M))
        assert text.count("conda:\n") >= n_shell, f"{rules.name}: a rule without conda:"
        assert n_shell <= n_rules
    for container in (REPO / "Dockerfile", REPO / "workflows" / "containers" / "medcnn.def"):
        text = container.read_text()
        assert "torch==2.13.0" in text and re.search(r"pip install (\.|/opt/medcnn)\s", text)


def test_report_packs_the_cohort_report_and_figures_with_captions(workflow_run, tmp_path):
    _, _, _, _, configfile = workflow_run
    out = tmp_path / "report.zip"
    result = run_from_repo(configfile, "--report", str(out))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    names = [Path(n).name for n in zipfile.ZipFile(out).namelist()]
    for expected in ("cohort.html", "cxr_roc.png", "cxr_reliability.png", "cxr_fold0_history.png"):
        assert expected in names, names
    html = next(
        zipfile.ZipFile(out).read(n).decode()
        for n in zipfile.ZipFile(out).namelist()
        if n.endswith("report.html")
    )
    for caption in ("roc.rst", "history.rst", "reliability.rst"):
        # the caption's first sentence (up to a colon), as the report renders it
        first = (REPO / "workflows" / "report" / caption).read_text()
        first = first.split(":")[0].split(". ")[0].strip()
        assert first in html, caption
