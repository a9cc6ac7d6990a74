"""benchmarks/hardtask.py judges the textures task's goals from its runs (no training here)."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def hardtask() -> ModuleType:
    sys.path.insert(0, str(BENCH))  # the script imports its sibling _timing lazily
    try:
        spec = importlib.util.spec_from_file_location("hardtask_under_test", BENCH / "hardtask.py")
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod
    finally:
        sys.path.remove(str(BENCH))


def _runs(acc: dict[tuple[float, int], float]) -> list[dict[str, Any]]:
    return [{"width": w, "seed": s, "accuracy": a} for (w, s), a in acc.items()]


def test_twice_as_wide_is_judged_seed_by_seed(hardtask: ModuleType) -> None:
    # prepare: width 0.5 is 4, 2 and 6 points above 0.25 (mean 4: met, not on every seed)
    runs = _runs(
        {(0.25, 0): 0.80, (0.25, 1): 0.82, (0.25, 2): 0.84}
        | {(0.5, 0): 0.84, (0.5, 1): 0.84, (0.5, 2): 0.90}
    )
    # act
    out = hardtask.goal_checks(runs, [0.25, 0.5])
    # assert
    wider = out["wider"]
    assert wider["gain_mean"] == pytest.approx(0.04)
    assert wider["gain_by_seed"] == pytest.approx({"0": 0.04, "1": 0.02, "2": 0.06})
    assert wider["met"] is True and wider["met_every_seed"] is False
    assert out["band"]["mean"] == pytest.approx(0.82) and out["band"]["met"] is True
    line = [x for x in out["lines"] if "points above" in x][0]
    assert "+4.0 on the mean" in line and "seed 1 +2.0" in line
    assert line.endswith("met (not on every seed)")


def test_a_small_gain_and_an_easy_task_are_missed(hardtask: ModuleType) -> None:
    # prepare: fp32 saturated (97 %) and the wider net only 1 point better
    runs = _runs({(0.25, 0): 0.97, (0.5, 0): 0.98})
    # act
    out = hardtask.goal_checks(runs, [0.25, 0.5])
    # assert
    assert out["band"]["met"] is False and out["wider"]["met"] is False
    assert sum("MISSED" in x for x in out["lines"]) == 2


def test_without_the_doubled_width_the_check_says_it_was_not_judged(
    hardtask: ModuleType,
) -> None:
    out = hardtask.goal_checks(_runs({(0.25, 0): 0.85, (0.75, 0): 0.9}), [0.25, 0.75])
    assert "wider" not in out
    assert any("not judged, width 0.5 was not run" in x for x in out["lines"])


def test_the_quiet_wall_estimate_packs_seeds_onto_the_cores(hardtask: ModuleType) -> None:
    # prepare: three seeds of 300 CPU seconds each, one of which spent 30 s training a baseline
    runs = [{"cpu_seconds": {"binary": 100.0, "total": 300.0}} for _ in range(3)]
    runs[0]["cpu_seconds"]["train baseline"] = 30.0
    cores = os.cpu_count() or 1
    # act
    together = hardtask.cpu_estimate(runs, 3)
    one_by_one = hardtask.cpu_estimate(runs, 1)
    # assert: a part missing from a seed counts as 0 there; one job at a time adds up
    assert together["per_seed"] == {"binary": 100.0, "total": 300.0, "train baseline": 10.0}
    assert one_by_one["quiet_wall_s"] == pytest.approx(900.0)
    assert together["quiet_wall_s"] == pytest.approx(900.0 / min(cores, 3))
