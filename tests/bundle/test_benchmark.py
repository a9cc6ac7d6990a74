"""The security benchmark runs (tiny sizes) and writes the JSON the docs quote."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "security.py"


@pytest.mark.slow
def test_security_benchmark_runs(tmp_path: Path) -> None:
    pytest.importorskip("onnx", reason="the benchmark builds its models with onnx")
    out = tmp_path / "security.json"
    r = subprocess.run(
        [sys.executable, SCRIPT, "--sizes", "1", "--repeats", "1", "--out", out],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    report = json.loads(out.read_text())
    row = report["results"]["1MB"]
    assert 0.9e6 < row["model_bytes"] < 1.1e6
    assert row["plain_s"] > 0 and row["secure_s"] > 0
    assert all(run["ok"] for runs in row["runs"].values() for run in runs)
    assert "1MB |" in r.stdout
