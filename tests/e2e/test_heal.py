"""The heal pipeline (edgeloop.loop) on a real ``edgeloop server``: a queued ``finetune`` job is
claimed, fine-tuned with Flower over the cohort's simulated devices, gated, registered with a
lineage naming the alert's job, released with a delta from the version in the field, rolled
out to the cohort with accuracy and error gates (no drift gate), and finished with its result."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("flwr")
pytest.importorskip("onnx")

from fl_model import blobs, model_bytes  # noqa: E402

pytestmark = pytest.mark.slow


def _fleet(fleet_server):  # type: ignore[no-untyped-def]
    from edgeloop.loop import FleetAccess

    data = fleet_server.data
    token = (data / "admin-token").read_text().strip()
    return FleetAccess(fleet_server.url, token, fleet_server.db_url, data, keys=data / "keys",
                       repo=data / "tuf", verify=fleet_server.verify)


def test_a_queued_job_is_healed_and_rolled_out_to_its_cohort(fleet_server) -> None:  # type: ignore[no-untyped-def]
    from edgeloop.loop import DEFAULT_GATES, EST_MARGIN, DatasetCohort, HealPlan, heal_next
    from edgeloop.registry import Registry

    fleet_server.publish("blobs", 1, scale=1.0, onnx=model_bytes())
    fleet = _fleet(fleet_server)
    mon = fleet.monitor()
    queued = mon.queue_job("blobs", 1, cohort="region=north", reason="drift alert (test)")
    x, y = blobs(1200)
    steps: list[str] = []

    res = heal_next(fleet, lambda job: DatasetCohort(x, y, devices_n=6, severity=0.5),
                    HealPlan(rounds=3, soak_s=1.0, wait_s=0), worker="t",
                    on_step=lambda step, text: steps.append(step))

    assert res is not None and res.ok, res
    assert steps == ["finetune", "refit", "register", "release", "rollout"]
    assert res.gate is not None and res.gate["accepted"]
    assert res.gate["candidate_accuracy"] > res.gate["base_accuracy"]
    assert res.version == 2 and res.job_id == queued["id"]
    assert res.refit["within"] and res.refit["recipe"] is None
    assert res.rollout is not None and res.rollout["cohort"] == "region=north"
    floor = f"{res.gate['candidate_accuracy'] - EST_MARGIN:.3f}"
    assert res.rollout["gates"] == [*DEFAULT_GATES, f"est_accuracy>={floor}",
                                    f"realized_accuracy>={floor}"]
    assert not any(g.startswith("drift") for g in res.rollout["gates"])
    # a delta from v1 (the version in the field) to v2, smaller than the full bundle
    assert len(res.deltas) == 1 and res.bundle_bytes is not None
    assert next(iter(res.deltas.values())) < res.bundle_bytes
    # the job is finished with the result
    job = next(j for j in mon.jobs(kind="finetune") if j["id"] == queued["id"])
    assert job["state"] == "succeeded" and job["result"]["version"] == 2
    # the lineage names the job (and the alert event the job came from), the run, the reference
    with Registry(fleet.db_url, fleet.data) as reg:
        card = reg.resolve("blobs@2").card
    assert card is not None
    roles = {r.role: r for r in card.lineage}
    assert {"parent_version", "federated_round", "monitor_reference", "monitor_alert",
            "reference_data"} <= set(roles)
    assert f"job {queued['id']}" in (roles["monitor_alert"].name or "")
    assert "cohort region=north" in (roles["reference_data"].name or "")
    assert card.extra["heal"]["job_id"] == queued["id"]


def test_no_queued_job_is_none_and_a_refused_candidate_fails_the_job(fleet_server) -> None:  # type: ignore[no-untyped-def]
    from edgeloop.loop import DatasetCohort, HealPlan, heal_next

    fleet_server.publish("blobs", 1, scale=1.0, onnx=model_bytes())
    fleet = _fleet(fleet_server)
    x, y = blobs(600)
    cohort = DatasetCohort(x, y, devices_n=4)
    assert heal_next(fleet, lambda job: cohort, HealPlan(rounds=1, wait_s=0)) is None

    queued = fleet.monitor().queue_job("blobs", 1, cohort="region=south")
    res = heal_next(fleet, lambda job: cohort, HealPlan(rounds=1, min_gain=1.0, wait_s=0))

    assert res is not None and not res.ok and res.version is None
    assert "federated evaluation gate refused" in res.reason
    job = next(j for j in fleet.monitor().jobs() if j["id"] == queued["id"])
    assert job["state"] == "failed"


def test_heal_worker_cli_heals_one_job(fleet_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    fleet_server.publish("blobs", 1, scale=1.0, onnx=model_bytes())
    x, y = blobs(800)
    np.savez(tmp_path / "cohort.npz", x=x, y=y)
    fleet = _fleet(fleet_server)
    fleet.monitor().queue_job("blobs", 1, cohort="region=north")
    data = fleet_server.data
    args = ["heal", "--server", fleet_server.url, "--data", str(data), "worker",
            "--dataset", str(tmp_path / "cohort.npz"), "--db", fleet_server.db_url,
            "--registry-data", str(data), "--keys", str(data / "keys"), "--repo",
            str(data / "tuf"), "--devices", "4", "--rounds", "2", "--wait", "0", "--once",
            "--json"]
    run = subprocess.run([sys.executable, "-m", "edgeloop", *args], capture_output=True,
                         text=True, env=dict(os.environ, COLUMNS="200"), timeout=300)

    assert run.returncode == 0, run.stdout + run.stderr
    out = json.loads(run.stdout)
    assert out["ok"] and out["version"] == 2 and out["cohort"] == "region=north"


def test_bad_heal_input_is_one_line(tmp_path: Path) -> None:
    from edgeloop.errors import InputError
    from edgeloop.loop import DatasetCohort, HealPlan

    with pytest.raises(InputError, match="drift gate"):
        HealPlan(gates=("drift_psi_max<0.2",))
    with pytest.raises(InputError, match="rounds"):
        HealPlan(rounds=0)
    with pytest.raises(InputError, match="at least 4 labelled"):
        DatasetCohort(np.zeros((3, 8), np.float32), np.zeros(3), devices_n=2)
    run = subprocess.run([sys.executable, "-m", "edgeloop", "heal", "worker", "--dataset", "x",
                          "--db", "sqlite:///r.db", "--registry-data", str(tmp_path), "--keys",
                          str(tmp_path / "nope"), "--repo", str(tmp_path), "--once"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert run.returncode != 0
    assert "--keys" in run.stderr and "expected an existing directory" in run.stderr
    assert list(tmp_path.iterdir()) == []
    run = subprocess.run([sys.executable, "-m", "edgeloop", "heal", "worker", "--dataset", "x",
                          "--db", "sqlite:///r.db", "--registry-data", str(tmp_path), "--keys",
                          str(tmp_path), "--repo", str(tmp_path), "--idle", "-1"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert run.returncode != 0
    assert run.stderr.strip() == "error: --idle -1.0: expected seconds > 0 and at most 86400"
    assert list(tmp_path.iterdir()) == []
