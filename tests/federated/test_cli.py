"""``edgeloop fl simulate``: a better candidate becomes a registry version whose lineage names
the run; a worse one is not registered and the command exits 33 (GateError) saying why in one
line; bad input is one line."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("flwr")
pytest.importorskip("onnx")

from fl_model import blobs, model_bytes  # noqa: E402

Cli = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def setup(tmp_path: Path, cli: Cli) -> Path:
    (tmp_path / "base.onnx").write_bytes(model_bytes())
    x, y = blobs(1500)
    np.savez(tmp_path / "feed.npz", x=x, y=y)
    pushed = cli("registry", "push", "base.onnx", "--name", "blobs", "--db",
                 "sqlite:///reg.db", "--data", "store")
    assert pushed.returncode == 0, pushed.stderr
    return tmp_path


@pytest.mark.slow
def test_a_better_candidate_is_registered_with_its_lineage(setup: Path, cli: Cli) -> None:
    run = cli("fl", "simulate", "--model", "blobs@1", "--dataset", "feed.npz", "--clients", "5",
              "--rounds", "3", "--strategy", "fedprox", "--compression", "int8",
              "--db", "sqlite:///reg.db", "--data", "store", "--out", "run1", "--json")

    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["registered"] == "blobs@2" and out["gate"]["accepted"]
    record = json.loads((setup / "run1" / "run.json").read_text())
    assert record["plan"]["strategy"] == "fedprox" and record["participants"]["clients"] == 5
    lineage = cli("registry", "lineage", "blobs@2", "--db", "sqlite:///reg.db", "--data",
                  "store", "--json")
    assert lineage.returncode == 0, lineage.stderr
    text = lineage.stdout
    assert "federated_round" in text and out["run_id"] in text
    assert "parent_version" in text and "monitor_reference" in text
    card = json.loads((setup / "run1" / "model.card.json").read_text())
    assert "fedprox" in card["description"] and card["metrics"]["fl_clients"] == 5
    # back into the loop: the candidate requantizes like any other version
    quant = cli("optimize", "run1/model.onnx", "--recipe", "int8", "--data", "feed.npz",
                "--out", "int8")
    assert quant.returncode == 0, quant.stderr
    assert (setup / "int8" / "model.onnx").exists()


@pytest.mark.slow
def test_a_candidate_that_does_not_gain_enough_is_not_registered(setup: Path, cli: Cli) -> None:
    run = cli("fl", "simulate", "--model", "blobs@1", "--dataset", "feed.npz", "--clients", "4",
              "--rounds", "1", "--epochs", "1", "--lr", "0.0001", "--min-gain", "0.5",
              "--db", "sqlite:///reg.db", "--data", "store", "--out", "run2")

    assert run.returncode == 33, run.stderr  # GateError: a script can tell a rejection apart
    errors = [ln for ln in run.stderr.splitlines() if ln.startswith("error:")]  # bar aside
    assert len(errors) == 1 and "not registered" in errors[0] and "base" in errors[0], run.stderr
    assert "run.json" in errors[0] and (setup / "run2" / "run.json").exists()
    assert not (setup / "run2" / "model.onnx").exists()
    listed = cli("registry", "list", "--db", "sqlite:///reg.db", "--data", "store")
    assert "blobs@2" not in listed.stdout


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--partition", "zipf"], "partition"),
        (["--strategy", "fedsgd"], "strategy"),
        (["--compression", "int4"], "compression"),
        (["--clients", "1"], "clients"),
        (["--model", "nothing"], "--model"),
        (["--model", "feed.npz"], "--model 'feed.npz': expected an ONNX model"),
        (["--trainer", "full"], "--checkpoint"),
        (["--backend", "spark"], "backend"),
        (["--trainer", "lora", "--checkpoint", "x.pt"], "trainer"),
    ],
)
def test_bad_options_say_what_was_expected(setup: Path, cli: Cli, args: list[str],
                                           expected: str) -> None:
    base = ["fl", "simulate", "--model", "base.onnx", "--dataset", "feed.npz"]
    run = cli(*base, *args)
    assert run.returncode != 0
    lines = [ln for ln in run.stderr.strip().splitlines() if ln]
    assert len(lines) == 1 and expected in lines[0], run.stderr
    assert not list(setup.glob("fl-*"))
