"""`edgeloop demo` (the README's main job) runs the loop end to end on embedded defaults."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.mark.slow
def test_demo_runs_the_loop_and_the_fleet_serves(cli, tmp_path: Path) -> None:
    work = tmp_path / "demo"
    r = cli("demo", "--workdir", str(work), "--epochs", "3", "--devices", "5", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    result = json.loads(r.stdout)
    steps = {s["name"]: s for s in result["steps"]}
    assert list(steps)[:5] == ["profile", "train", "export", "optimize", "benchmark"]
    assert steps["train"]["figures"]["accuracy"] > 0.9
    fleet = steps["fleet"]["figures"]
    assert fleet["serving"] == {"digits-cnn@1": 5}
    assert steps["rollout"]["figures"]["state"] == "completed"
    assert steps["rollback"]["figures"]["state"] == "rolled_back"
    assert "failed" in steps["rollback"]["figures"]["events"]
    # after the automatic rollback every device serves the good v2 again
    assert steps["telemetry"]["figures"]["serving"] == {"digits-cnn@2": 5}
    # the mix of simulated hardware gets both variants: int8 where dot-product ISA exists
    assert "fp32" in fleet["variants"] and any(v.startswith("int8") for v in fleet["variants"])
    assert (work / "int8" / "report.html").exists()
    assert json.loads((work / "demo.json").read_text())["steps"][-1]["name"] == "telemetry"


def test_demo_refuses_a_folder_that_is_not_its_own(cli, tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    r = cli("demo", "--workdir", str(tmp_path))
    assert r.returncode == 10
    assert "is not an earlier demo's folder" in r.stderr
    assert (tmp_path / "precious.txt").read_text() == "keep me"
