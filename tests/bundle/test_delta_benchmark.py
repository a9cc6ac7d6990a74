"""The delta benchmark runs (the CNN, head-only) and writes the keys the issue names."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "delta.py"


@pytest.mark.slow
def test_delta_benchmark_runs(tmp_path: Path) -> None:
    pytest.importorskip("torch", reason="the benchmark exports zoo models with torch")
    out = tmp_path / "delta.json"
    r = subprocess.run(
        [sys.executable, SCRIPT, "--models", "cnn", "--changes", "head,round", "--out", out],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    head, rnd = json.loads(out.read_text())["cases"]
    for row in (head, rnd):
        assert {"model", "model_bytes", "change", "full_bytes", "delta_bytes", "ratio"} <= set(row)
        assert row["delta_bytes"] > row["delta_file_bytes"] > 0  # metadata and key counted
        assert row["apply_s"] > 0 and row["peak_rss_mb"] > 0
    assert head["ratio"] < rnd["ratio"] <= 1.0
    assert "| cnn |" in r.stdout
