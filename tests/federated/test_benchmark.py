"""The federated benchmark runs at smoke size and writes the rows the issue names."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "federated.py"


@pytest.mark.slow
def test_federated_benchmark_runs(tmp_path: Path) -> None:
    pytest.importorskip("torch", reason="the benchmark trains the base with the zoo")
    pytest.importorskip("flwr")
    out = tmp_path / "federated.json"
    # an earlier run's rows of another task, which a run of --tasks har keeps
    earlier = {"quick": True, "load_before": "0.5", "wall_seconds": 1.0, "args": {"seeds": [7]},
               "runs": [{"task": "textures", "seed": 7, "method": "none", "partition": "-",
                         "clients": 0, "accuracy": 0.5},
                        {"task": "har", "seed": 7, "method": "none", "partition": "-",
                         "clients": 0, "accuracy": 0.25}]}
    out.write_text(json.dumps(earlier))
    cmd = [sys.executable, SCRIPT, "--quick", "--tasks", "har", "--out", out,
           "--workdir", tmp_path / "work"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    data = json.loads(out.read_text())
    kept = [row for row in data["runs"] if row["task"] == "textures"]
    assert kept == earlier["runs"][:1] and data["kept"]["textures"]["load_before"] == "0.5"
    assert not any(row["seed"] == 7 for row in data["runs"] if row["task"] == "har")
    assert any(row["task"] == "textures" for row in data["summary"])
    base = next(row for row in data["runs"] if row["method"] == "none" and row["task"] == "har")
    assert base["base_cached"] is False and base["base_fit_seconds"] > 0
    methods = {row["method"] for row in data["summary"]}
    assert {"none", "central-head", "head-fedavg", "head-fedprox", "poisoned20-fedavg",
            "poisoned20-fedmedian", "poisoned20-krum", "head-fedavg-int8",
            "head-fedavg-topk:0.1", "full-fedavg"} <= methods
    fed = next(row for row in data["runs"] if row["method"] == "head-fedavg-int8")
    full = next(row for row in data["runs"] if row["method"] == "head-fedavg"
                and row["partition"] == fed["partition"])
    assert 0 < fed["bytes_up_per_round"] < full["bytes_up_per_round"] / 3
    # the centralized reference is a default row, cached like the base, and the target
    central = next(row for row in data["runs"] if row["method"] == "central-full")
    assert central["central_cached"] is False and central["central_fit_seconds"] > 0
    assert {row.get("target_method") for row in data["runs"] if row["clients"]} == {
        "central-full"}
    # drift rows say how the drifted devices' view of the test split fares, base included
    drift = [row for row in data["runs"] if row["partition"].startswith("drift")]
    assert drift and all(0 <= row["drifted_accuracy"] <= 1 for row in drift)
    assert "drifted_accuracy" in base
    assert not any("drifted_accuracy" in row for row in data["runs"]
                   if row["partition"].startswith("dirichlet"))
    assert "load_after" in data and data["quick"]
    assert "head-fedavg" in r.stdout
    # the trained base is reused from the work directory, with the time it took
    r = subprocess.run([*cmd, "--no-full", "--partitions", "iid"], capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    again = next(row for row in json.loads(out.read_text())["runs"]
                 if row["method"] == "none" and row["task"] == "har")
    assert again["base_cached"] is True
    assert again["base_fit_seconds"] == base["base_fit_seconds"]
    assert again["accuracy"] == base["accuracy"]
    central_again = next(row for row in json.loads(out.read_text())["runs"]
                         if row["method"] == "central-full")
    assert central_again["central_cached"] is True
    assert central_again["accuracy"] == central["accuracy"]


@pytest.mark.slow
def test_federated_benchmark_deploy_group_runs(tmp_path: Path) -> None:
    """--deploy --quick: a SuperLink and 3 SuperNodes on loopback; every row of the group."""
    pytest.importorskip("torch", reason="the benchmark trains the base with the zoo")
    pytest.importorskip("flwr")
    out = tmp_path / "federated-deploy.json"
    r = subprocess.run(
        [sys.executable, SCRIPT, "--deploy", "--quick", "--tasks", "har", "--out", out,
         "--workdir", tmp_path / "work"],
        capture_output=True, text=True, timeout=900,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    data = json.loads(out.read_text())
    rows = {row["method"]: row for row in data["runs"]}
    assert set(rows) == {"inprocess-fedavg", "inprocess-secagg", "deploy-fedavg",
                         "deploy-secagg", "deploy-dp-eps8", "deploy-dp-eps1"}
    assert all(row["rounds_aggregated"] == 1 for row in rows.values())
    assert rows["deploy-dp-eps1"]["dp_noise"] > rows["deploy-dp-eps8"]["dp_noise"] > 0
    assert rows["deploy-secagg"]["bytes_up_per_round"] > rows["deploy-fedavg"][
        "bytes_up_per_round"]
    assert "SecAgg+" in rows["deploy-secagg"]["privacy"]["mechanism"]
    assert "load_after" in data and data["quick"]


def test_central_full_reuses_hardtasks_model_only_when_it_is_the_same(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """textures' central-full is hardtask's MobileNet 0.25 of the same seed and recipe: reused
    from its work directory with the training time it recorded; anything else is trained."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("federated_bench", SCRIPT)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, bench)  # its dataclasses look themselves up
    spec.loader.exec_module(bench)
    work = tmp_path / "hardtask-work"
    work.mkdir()
    (work / "mobilenet-w0.25-s1-edefault-defaults.pt").write_bytes(b"ckpt")
    runs = [{"width": 0.25, "seed": 1, "fit_seconds": 12.5},
            {"width": 0.5, "seed": 1, "fit_seconds": 99.0}]
    (tmp_path / "hardtask.json").write_text(json.dumps({"quick": False, "runs": runs,
                                                        "load_before": "0.1"}))
    own = bench.BaseRecipe(n=None)
    found = bench.trained_elsewhere("textures", 1, own, work)
    assert found is not None and found[0] == work / "mobilenet-w0.25-s1-edefault-defaults.pt"
    assert found[1]["fit_seconds"] == 12.5 and "hardtask.py" in found[1]["trained_by"]
    assert bench.trained_elsewhere("textures", 0, own, work) is None  # no such seed
    assert bench.trained_elsewhere("textures", 1, bench.BaseRecipe(n=800), work) is None
    assert bench.trained_elsewhere("textures", 1, bench.BaseRecipe(n=None, epochs=3),
                                   work) is None
    assert bench.trained_elsewhere("har", 1, own, work) is None
    assert bench.trained_elsewhere("textures", 1, own, None) is None
    (tmp_path / "hardtask.json").write_text(json.dumps({"quick": True, "runs": runs}))
    found = bench.trained_elsewhere("textures", 1, own, work)
    assert found is not None and found[1]["fit_seconds"] is None  # a smoke run's figures


def _bench() -> Any:
    spec = importlib.util.spec_from_file_location("bench_federated", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module


def test_central_head_starts_from_the_base_and_selects_on_held_out_labels() -> None:
    from edgeloop.federated.device import Head, split_held_out

    rng = np.random.default_rng(0)
    centres = rng.normal(scale=1.5, size=(4, 8))
    y = rng.integers(0, 4, 1000)
    x = (centres[y] + rng.normal(size=(1000, 8))).astype(np.float32)
    # the base: nearest centroid, the best a linear head can do on these classes
    base = Head(centres.T.astype(np.float32), (-(centres ** 2).sum(1) / 2).astype(np.float32))
    bench = _bench()
    held = split_held_out(x, y, 0.2)[1]
    base_acc = base.evaluate(*held)[1]
    # learning rates far too high with momentum: the base head itself is kept (epoch 0)
    head, chosen = bench.select_head(base, x, y, 5, (10.0, 5.0), 0)
    assert chosen["epoch"] == 0 and head is base and chosen["lr"] == 10.0
    assert chosen["held_out_accuracy"] == base_acc
    # from a poor base (the classes' order reversed), training is kept, the better rate's
    poor = Head(base.weight[:, ::-1].copy(), base.bias[::-1].copy())
    head, chosen = bench.select_head(poor, x, y, 10, (10.0, 0.05), 0)
    alone = [bench.select_head(poor, x, y, 10, (lr,), 0)[1] for lr in (10.0, 0.05)]
    assert chosen == max(alone, key=lambda c: c["held_out_accuracy"]) and chosen["epoch"] >= 1
    assert chosen["held_out_accuracy"] > poor.evaluate(*held)[1] + 0.3
    assert chosen["held_out_accuracy"] == head.evaluate(*held)[1]
    assert chosen["held_out"] == len(held[1]) and chosen["trained_on"] == 1000 - len(held[1])
