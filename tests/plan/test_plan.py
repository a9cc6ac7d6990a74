"""The planner: candidates in order of cost, the cost model's screen, the first fit, refusals."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edgeloop.artifacts import ModelCard
from edgeloop.errors import BudgetError, InputError
from edgeloop.plan import FitBudget, candidate_names, fit_model
from edgeloop.zoo import train


@pytest.fixture(scope="module")
def cnn(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small CNN on digits, well above chance and below 100 % (about 97 %)."""
    path = tmp_path_factory.mktemp("cnn") / "cnn.pt"
    train("cnn", "digits", 3, out=path, threads=1, width=16)
    return path


def test_candidates_come_in_order_of_expected_cost() -> None:
    names = [n for n, _ in candidate_names("cnn", gemm_heavy=False)]
    assert names == [
        "fp32", "int8-dynamic", "int8", "prune30-int8", "prune50-int8", "prune70-int8",
        "distill-int8", "binary",
    ]  # fmt: skip
    assert "int4" in [n for n, _ in candidate_names("transformer", gemm_heavy=True)]
    assert "binary" not in [n for n, _ in candidate_names("transformer", gemm_heavy=True)]
    # an ONNX file without a checkpoint: the quantization candidates only
    assert [n for n, _ in candidate_names(None, False)] == ["fp32", "int8-dynamic", "int8"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "at least one of"),
        ({"max_latency_ms": -1.0}, "--max-latency-ms must be positive"),
        ({"max_ram_mb": float("nan")}, "--max-ram-mb must be a finite number"),
        ({"min_accuracy": 1.5}, r"--min-accuracy must be in \[0, 1\]"),
    ],
)
def test_budget_refuses_bad_values(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(InputError, match=message):
        FitBudget(**kwargs)


def test_a_lax_budget_keeps_the_model_as_it_is(cnn: Path, tmp_path: Path) -> None:
    res = fit_model(
        cnn, target="rpi4", budget=FitBudget(max_size_kb=500, min_accuracy=0.5), out_dir=tmp_path
    )
    assert res.chosen is not None and res.chosen.name == "fp32"
    assert [c.status for c in res.candidates[1:]] == ["not tried"] * (len(res.candidates) - 1)
    assert res.chosen.measured["accuracy"] > 0.5
    card = ModelCard.load(tmp_path / "model_card.json")
    roles = {r.role: r for r in card.lineage}
    assert {"budget", "plan", "source_model"} <= set(roles)
    assert roles["budget"].name == "size <= 500 KB, accuracy >= 0.5"
    assert "chose fp32" in (roles["plan"].name or "")
    assert card.extra["fit"]["chosen"] == "fp32" and card.extra["fit"]["target"] == "rpi4"
    assert card.sha256 == ModelCard.load(tmp_path / "model_card.json").sha256
    assert "chose <b>fp32</b>" in (tmp_path / "report.html").read_text()
    assert json.loads((tmp_path / "plan.json").read_text())["chosen"] == "fp32"
    assert not list(tmp_path.glob(".plan-*"))  # the work folder is gone


def test_the_cost_model_screens_before_anything_runs(cnn: Path, tmp_path: Path) -> None:
    # fp32 is about 31 KB: screened on its predicted size; a quantized model fits
    res = fit_model(cnn, target="rpi4", budget=FitBudget(max_size_kb=28), out_dir=tmp_path)
    first = res.candidates[0]
    assert first.name == "fp32" and first.status == "screened" and not first.measured
    assert first.reasons[0].startswith("predicted size") and "> 28 KB" in first.reasons[0]
    # dynamic int8 leaves a CNN's convolutions in float: priced as fp32, screened too
    dynamic = res.candidates[1]
    assert dynamic.name == "int8-dynamic" and dynamic.status == "screened"
    assert res.spared == 2
    assert res.chosen is not None and res.chosen.name == "int8"
    assert res.chosen.measured["size_bytes"] <= 28 * 1024
    assert (tmp_path / "model.onnx").stat().st_size == res.chosen.measured["size_bytes"]
    for c in res.candidates:
        if c.status == "rejected":  # explained with what was measured
            assert c.measured and all(r.startswith("measured") for r in c.reasons)


def test_nothing_fits_is_one_line_with_the_report_written(cnn: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(BudgetError, match="nothing fits the budget") as err:
        fit_model(
            cnn,
            target="rpi4",
            budget=FitBudget(max_size_kb=0.2),
            out_dir=out,
            search_trials=2,
        )
    assert "screened by the cost model" in str(err.value)
    plan = json.loads((out / "plan.json").read_text())
    assert plan["chosen"] is None and plan["spared_by_cost_model"] == len(plan["candidates"])
    assert all(c["reasons"] for c in plan["candidates"])
    assert (out / "report.html").exists() and not (out / "model.onnx").exists()


def test_cli_fit_and_its_refusals(cnn: Path, tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "edgeloop", "fit", *args],
            cwd=tmp_path, capture_output=True, text=True, timeout=300,
        )  # fmt: skip

    ok = run(str(cnn), "--target", "rpi4", "--max-size-kb", "500", "--out", "o", "--json")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["chosen"] == "fp32" and (tmp_path / "o" / "model.onnx").exists()
    neg = run(str(cnn), "--target", "rpi4", "--max-ram-mb", "-3", "--out", "n")
    assert neg.returncode == 10 and "--max-ram-mb must be positive" in neg.stderr
    assert len(neg.stderr.strip().splitlines()) == 1 and not (tmp_path / "n").exists()
    none = run(str(cnn), "--target", "rpi4", "--out", "x")
    assert none.returncode == 10 and "at least one of" in none.stderr
    missing = run("nope.pt", "--target", "rpi4", "--max-size-kb", "9", "--out", "m")
    assert missing.returncode == 11 and "neither a file nor a search space" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
    tiny = run(
        str(cnn), "--target", "rpi4", "--max-size-kb", "0.2", "--search-trials", "1", "--out", "t"
    )
    assert tiny.returncode == 32 and len(tiny.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "t" / "model.onnx").exists()


@pytest.mark.slow
def test_accuracy_floor_rejects_with_measured_figures(cnn: Path, tmp_path: Path) -> None:
    with pytest.raises(BudgetError, match="accuracy"):
        fit_model(
            cnn,
            target="rpi4",
            budget=FitBudget(max_size_kb=500, min_accuracy=0.9999),
            out_dir=tmp_path,
            prune_ratios=(0.5,),
            finetune_epochs=1,
            distill_epochs=1,
            search_trials=2,
            search_epochs=1,
            train_samples=300,
        )
    plan = json.loads((tmp_path / "plan.json").read_text())
    run = [c for c in plan["candidates"] if c["status"] == "rejected"]
    assert {c["name"] for c in run} >= {"fp32", "int8", "prune50-int8", "binary"}
    for c in run:
        assert c["measured"]["accuracy"] is not None
        assert any(r.startswith("measured accuracy") for r in c["reasons"])
