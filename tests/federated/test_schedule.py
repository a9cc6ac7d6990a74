"""``edgeloop fl schedule``: central retraining, federated rounds and personalization in one
command at tiny size; each accepted model step is a registry version whose lineage names its
parent version and the schedule record; personalization registers nothing (heads stay on the
devices) and the record keeps its per-device gains; a rejected model step exits 33 (GateError)
after the accepted ones are registered; bad input is one line."""

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
REG = ("--db", "sqlite:///reg.db", "--data", "store")


@pytest.fixture
def setup(tmp_path: Path, cli: Cli) -> Path:
    (tmp_path / "base.onnx").write_bytes(model_bytes())
    x, y = blobs(800, seed=0)
    np.savez(tmp_path / "central.npz", x=x, y=y)
    x, y = blobs(800, seed=1)
    np.savez(tmp_path / "devices.npz", x=x, y=y)
    pushed = cli("registry", "push", "base.onnx", "--name", "blobs", *REG)
    assert pushed.returncode == 0, pushed.stderr
    return tmp_path


@pytest.mark.slow
def test_each_step_is_registered_with_its_lineage(setup: Path, cli: Cli) -> None:
    run = cli("fl", "schedule", "--model", "blobs@1", "--central", "central.npz",
              "--dataset", "devices.npz", "--rounds", "2", "--clients", "4",
              "--partition", "drift:0.5", "--central-epochs", "5", *REG, "--out", "h",
              "--json")
    out = json.loads(run.stdout)
    gated = [s for s in out["steps"] if s["kind"] != "personalize"]
    # exit 0 only when every model step was accepted; 33 (GateError) names the rejected one
    assert run.returncode == (0 if all(s["accepted"] for s in gated) else 33), run.stderr
    kinds = [s["kind"] for s in out["steps"]]
    assert kinds == ["central", "federated", "personalize"]
    central = out["steps"][0]
    assert central["accepted"] and central["metrics"]["accuracy"] > central["metrics"][
        "base_accuracy"]
    accepted = [s for s in out["steps"] if s["sha256"]]
    assert out["registered"] == [f"blobs@{2 + i}" for i in range(len(accepted))]
    record = json.loads((setup / "h" / "schedule.json").read_text())
    personal = record["steps"][2]
    assert personal["sha256"] is None and len(personal["detail"]["devices"]) == 4
    assert personal["metrics"]["served_accuracy"] >= personal["metrics"]["fleet_accuracy"]
    # scored apart from the held-out labels that chose the head: the unlabelled predictions
    for device in personal["detail"]["devices"]:
        if "serving" in device and not device["serving"]:
            assert device["unlabelled_served_accuracy"] == device["unlabelled_fleet_accuracy"]
    for key in ("unlabelled_fleet_accuracy", "unlabelled_served_accuracy",
                "drifted_unlabelled_served_accuracy"):
        assert 0 <= personal["metrics"][key] <= 1
    lineage = cli("registry", "lineage", "blobs@2", *REG, "--json")
    assert lineage.returncode == 0, lineage.stderr
    assert "hybrid_schedule" in lineage.stdout and out["schedule_id"] in lineage.stdout
    assert "parent_version" in lineage.stdout
    if len(accepted) > 1:  # the federated version's parent is the central one
        second = cli("registry", "lineage", "blobs@3", *REG, "--json")
        assert "blobs@2" in second.stdout and f"{out['schedule_id']}:federated" in second.stdout


def test_personalization_alone_registers_nothing(setup: Path, cli: Cli) -> None:
    run = cli("fl", "schedule", "--model", "base.onnx", "--dataset", "devices.npz",
              "--rounds", "0", "--clients", "3", "--out", "p", "--json")
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert [s["kind"] for s in out["steps"]] == ["personalize"] and out["registered"] == []
    assert not list((setup / "p").glob("*.onnx"))


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--rounds", "-1"], "--rounds"),
        (["--central", "central.npz", "--central-epochs", "0"], "--central-epochs"),
        (["--strategy", "fedsgd"], "strategy"),
        (["--partition", "zipf"], "partition"),
        (["--rounds", "0", "--no-personalize"], "no step"),
        (["--model", "nothing"], "--model"),
    ],
)
def test_bad_options_say_what_was_expected(setup: Path, cli: Cli, args: list[str],
                                           expected: str) -> None:
    base = ["fl", "schedule", "--model", "base.onnx", "--dataset", "devices.npz"]
    run = cli(*base, *args)
    assert run.returncode != 0
    lines = [ln for ln in run.stderr.strip().splitlines() if ln]
    assert len(lines) == 1 and expected in lines[0], run.stderr
    assert not list(setup.glob("hybrid-*"))


@pytest.mark.slow
def test_a_rejected_step_exits_33_after_registering_the_accepted_ones(
        setup: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """The federated gate is made unreachable (a gain of 1.0 asked for); the real gate rejects
    the candidate: the central version is registered, the federated one is not, exit 33."""
    import dataclasses

    from edgeloop.cli.app import main
    from edgeloop.federated import server

    real = server.hybrid_schedule

    def strict(model: bytes, **kw: object) -> object:
        plan = kw["plan"]
        fed = dataclasses.replace(plan.federated, min_gain=1.0)  # type: ignore[attr-defined]
        return real(model, **{**kw, "plan": dataclasses.replace(plan, federated=fed)})  # type: ignore[arg-type]

    monkeypatch.setattr(server, "hybrid_schedule", strict)
    monkeypatch.chdir(setup)
    code = main(["fl", "schedule", "--model", "blobs@1", "--central", "central.npz",
                 "--dataset", "devices.npz", "--rounds", "1", "--clients", "3",
                 "--central-epochs", "5", "--no-personalize", *REG, "--out", "r"])
    err = capsys.readouterr().err
    assert code == 33, err
    assert "federated step" in err and "not registered" in err and "blobs@2" in err
    record = json.loads((setup / "r" / "schedule.json").read_text())
    assert [s["accepted"] for s in record["steps"]] == [True, False]
    assert not (setup / "r" / "federated.onnx").exists()


def test_the_central_step_chooses_its_rate_and_epoch_on_train_data_only() -> None:
    """The step trains on four fifths of the central train split and records the rate and
    epoch it kept on the other fifth (the parent's head, epoch 0, included); the val split is
    left to the gate."""
    from edgeloop.federated.server._hybrid import central_step

    x, y = blobs(600, seed=0)
    vx, vy = blobs(300, seed=2)
    model = model_bytes()
    _, step = central_step(model, (x, y), (vx, vy), epochs=4, lr=10.0, seed=0)
    assert step.metrics["lr"] in (10.0, 2.0, 0.4)
    assert step.metrics["train_samples"] == 480  # four fifths: the rest chose the rate
    assert 0 <= step.metrics["best_epoch"] <= 4
    assert step.metrics["held_out_accuracy"] >= 0.0
    # the gate's verdict: accepted only when not worse than the parent on val
    assert step.accepted == (step.metrics["accuracy"] >= step.metrics["base_accuracy"])
