"""benchmarks/fit.py runs at smoke size: three budgets, the planner against the presets."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "fit.py"


@pytest.mark.slow
def test_fit_benchmark_runs(tmp_path: Path) -> None:
    out = tmp_path / "fit.json"
    r = subprocess.run(
        [sys.executable, SCRIPT, "--quick", "--out", out],
        capture_output=True, text=True, timeout=900, cwd=tmp_path,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    data = json.loads(out.read_text())
    assert [s["budget"] for s in data["summary"]] == ["loose", "medium", "tight"]
    (run,) = data["runs"]
    assert set(run["presets"]) == {"int8-dynamic", "int8", "fp16", "int4", "prune50-int8",
                                   "qat-int8"}  # fmt: skip
    for row in run["budgets"].values():
        assert row["spared"] >= 0 and row["candidates"]
    assert "load_after" in data and data["quick"]
