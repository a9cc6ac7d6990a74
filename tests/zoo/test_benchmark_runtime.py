"""benchmarks/runtime.py runs and writes its JSON (tiny settings; the real run is in the docs)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "runtime.py"


@pytest.mark.slow
def test_runtime_benchmark_writes_a_row_per_model_and_thread_count(tmp_path: Path) -> None:
    out = tmp_path / "runtime.json"
    args = ["--models", "autoencoder", "--repeats", "3", "--warmup", "1", "--out", str(out)]
    r = subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 0, r.stderr
    assert "| autoencoder | 1 |" in r.stdout
    data = json.loads(out.read_text())
    rows = data["rows"]
    assert {row["threads"] for row in rows} >= {1}
    for row in rows:
        assert row["model"] == "autoencoder"
        assert row["eager_p50_ms"] > 0 and row["ort_p50_ms"] > 0
        assert row["eager_over_ort"] == pytest.approx(row["eager_p50_ms"] / row["ort_p50_ms"])
        assert row["parity_max_abs_diff"] < 1e-4
