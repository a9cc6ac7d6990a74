"""benchmarks/search.py runs at smoke size and writes the figures the issue names."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "search.py"


@pytest.mark.slow
def test_search_benchmark_runs(tmp_path: Path) -> None:
    out = tmp_path / "search.json"
    r = subprocess.run(
        [sys.executable, SCRIPT, "--quick", "--targets", "rpi4", "--out", out],
        capture_output=True, text=True, timeout=900, cwd=tmp_path,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    data = json.loads(out.read_text())
    (target,) = data["targets"]
    assert target["target"] == "rpi4" and target["latency"] == "cost model"
    assert len(target["trials"]) == 4 and target["search_seconds"] > 0
    assert len(target["comparisons"]) == 4
    rank = data["rank_check"]
    assert len(rank["short_accuracy"]) == len(rank["long_accuracy"]) == 3
    assert "load_after" in data and data["quick"]
    assert "rank check" in r.stdout
