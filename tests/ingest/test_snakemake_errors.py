"""Under Snakemake, a config error is the last thing printed, in a few lines, no schema dump."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def test_schema_error_is_short_and_last(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text(
        yaml.safe_dump(
            {"results": str(tmp_path / "r"), "inputs": [str(tmp_path)], "ingest": {"minbytes": 1}}
        )
    )
    snakemake = Path(sys.executable).parent / "snakemake"
    done = subprocess.run(
        [str(snakemake), "-n", "--cores", "1", "--configfile", str(config)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert len(lines) <= 4, lines
    assert "ingest: Additional properties are not allowed ('minbytes' was unexpected)" in lines[1]
    assert lines[-1].startswith("Fix the config file")
