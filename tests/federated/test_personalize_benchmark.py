"""The personalization benchmark runs at smoke size and writes the rows the issue names: every
schedule (personal heads anchored and from scratch), each model step's gate and its reason, the
drifted test split, the device cost."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "personalize.py"


@pytest.mark.slow
def test_personalize_benchmark_runs(tmp_path: Path) -> None:
    pytest.importorskip("torch", reason="the benchmark trains the base with the zoo")
    pytest.importorskip("flwr")
    out = tmp_path / "personalize.json"
    r = subprocess.run([sys.executable, SCRIPT, "--quick", "--out", out,
                        "--workdir", tmp_path / "work"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    data = json.loads(out.read_text())
    rows = {row["schedule"]: row for row in data["summary"]}
    assert set(rows) == {"none", "personal", "scratch", "central", "federated", "hybrid",
                         "device-cost"}
    for name in ("personal", "scratch", "central", "federated", "hybrid"):
        assert "test_accuracy_mean" in rows[name] and "devices_devices_mean" in rows[name]
        assert 0 <= rows[name]["devices_unlabelled_served_accuracy_mean"] <= 1
        assert 0 <= rows[name]["devices_fresh_served_accuracy_mean"] <= 1
        assert 0 <= rows[name]["devices_drifted_fresh_fleet_accuracy_mean"] <= 1
    # personalization alone leaves the fleet model as deployed
    assert rows["personal"]["test_accuracy_mean"] == rows["none"]["test_accuracy_mean"]
    cost = rows["device-cost"]
    assert cost["fit_seconds_mean"] > 0 and cost["fit_peak_mb_mean"] > 0
    assert cost["head_bytes_mean"] > 0
    hybrid = next(r for r in data["runs"] if r["schedule"] == "hybrid")
    assert list(hybrid["steps"]) == ["central", "federated", "personalize"]
    assert set(hybrid["gates"]) == {"central", "federated"}  # each model step: accepted, why
    assert all(g["reason"] and 0 <= g["accuracy"] <= 1 for g in hybrid["gates"].values())
    assert "test_drifted_accuracy_mean" in rows["hybrid"] and "gates" in r.stdout
    assert "fresh samples" in r.stdout
    assert "load_after" in data and data["quick"] and "device cost" in r.stdout
