"""The tiny workflow on a real SLURM (scripts/local-slurm.sh start), compared to a local run.

Starts nothing itself: it uses the SLURM that is running, and is skipped when there is none.
"""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from tests.conftest import REPO, make_tiny_workflow, run_snakemake

pytestmark = pytest.mark.slurm


def slurm_ready() -> str | None:
    """None when a SLURM controller answers, else why the test cannot run."""
    if shutil.which("sbatch") is None:
        return "sbatch not on PATH: start a SLURM first (scripts/local-slurm.sh start)"
    probe = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"no SLURM controller answers: {probe.stderr.strip()}"
    try:
        import snakemake_executor_plugin_slurm  # noqa: F401
    except ImportError:
        return "snakemake-executor-plugin-slurm is not installed (pip install '.[slurm]')"
    return None


def without_timings(html: str) -> str:
    """A report without what legitimately differs between two runs: clock times, speeds."""
    html = re.sub(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC", "<date>", html)
    html = re.sub(r"[\d.]+ images/s", "<speed>", html)
    html = re.sub(
        r"<tr><th>(train[_ ]images[_ ]per[_ ]second|data[_ ]wait[_ ]fraction|seconds)</th>"
        r"<td[^>]*>[^<]*</td></tr>",
        "",
        html,
    )
    return re.sub(r"time per subject: [\d.]+ s", "<time>", html)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    reason = slurm_ready()
    if reason:
        pytest.skip(reason)
    runs = {}
    for mode in ("local", "slurm"):
        work = tmp_path_factory.mktemp(mode)
        _, _, configfile = make_tiny_workflow(work, n_patients=6, seed=11)
        extra = []
        if mode == "slurm":
            extra = [
                "--profile",
                str(REPO / "workflows" / "profiles" / "slurm"),
                "--slurm-init-seconds-before-status-checks",
                "2",
                "--jobs",
                "4",
            ]
        result = run_snakemake(work, configfile, *extra)
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
        runs[mode] = work
    return runs


def test_every_job_ran_as_a_slurm_job(two_runs):
    logs = sorted((two_runs["slurm"] / "logs").rglob("*.log"))
    assert len(logs) >= 6 + 4  # per subject (predict, saliency, report) + ingest, preprocess, …
    job_ids = set()
    for log in logs:
        found = re.findall(r"SLURM job (\d+) on ", log.read_text())
        assert found, f"{log} did not run under SLURM"
        job_ids.update(found)
    # per-subject jobs are grouped, so fewer SLURM jobs than logs, but more than one
    assert 1 < len(job_ids) <= len(logs)
    local_logs = (two_runs["local"] / "logs").rglob("*.log")
    assert not any("SLURM job" in log.read_text() for log in local_logs)


def test_reports_identical_to_the_local_run(two_runs):
    local = two_runs["local"] / "results" / "reports"
    slurm = two_runs["slurm"] / "results" / "reports"
    names = sorted(p.name for p in local.glob("*.html"))
    assert names == sorted(p.name for p in slurm.glob("*.html"))
    assert len(names) == 7  # 6 subjects + cohort
    for name in names:
        assert without_timings((local / name).read_text()) == without_timings(
            (slurm / name).read_text()
        ), name
