"""The federated benchmark runs at smoke size and writes the rows the issue names."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "federated.py"


@pytest.mark.slow
def test_federated_benchmark_runs(tmp_path: Path) -> None:
    pytest.importorskip("torch", reason="the benchmark trains the base with the zoo")
    pytest.importorskip("flwr")
    out = tmp_path / "federated.json"
    r = subprocess.run(
        [sys.executable, SCRIPT, "--quick", "--tasks", "har", "--out", out],
        capture_output=True, text=True, timeout=600,
    )
    assert r.returncode == 0, r.stderr
    data = json.loads(out.read_text())
    methods = {row["method"] for row in data["summary"]}
    assert {"none", "central-head", "head-fedavg", "head-fedprox", "poisoned20-fedavg",
            "poisoned20-fedmedian", "poisoned20-krum", "head-fedavg-int8",
            "head-fedavg-topk:0.1", "full-fedavg"} <= methods
    fed = next(row for row in data["runs"] if row["method"] == "head-fedavg-int8")
    full = next(row for row in data["runs"] if row["method"] == "head-fedavg"
                and row["partition"] == fed["partition"])
    assert 0 < fed["bytes_up_per_round"] < full["bytes_up_per_round"] / 3
    assert "load_after" in data and data["quick"]
    assert "head-fedavg" in r.stdout
