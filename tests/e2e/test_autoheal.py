"""Auto-heal as an unattended, durable service on a real ``edgeloop server``:

- a worker killed right after it registered the new version (before recording it) leaves a
  lease; the next worker takes the run over and resumes it: one new version (the earlier
  attempt's, found by the job its card names), one rollout, one job, succeeded;
- ``edgeloop server --auto-heal POLICY`` starts its worker process, which heals a queued drift
  job; the server is restarted in the middle of the run, and the restarted server's worker
  resumes it: the cohort healed once, with one job, one new version and one rollout.

The cohort's devices are simulated by the worker from a labelled data set (DatasetCohort) and
the federated fine-tune runs in-process (InProcessGrid), not on agents' SuperNodes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("flwr")
pytest.importorskip("onnx")

from fl_model import blobs, model_bytes  # noqa: E402

pytestmark = pytest.mark.slow

POLICY = {
    "version": 1,
    "rules": [{"name": "drift", "match": {"kinds": ["drift"]}, "action": "heal"}],
    "budget": {"rounds": 2, "max_devices": 4, "max_minutes": 1},
    "rollout": {"stages": [50, 100], "soak_s": 1},
    "limits": {"max_runs_per_day": 5, "cooldown_after_failure_s": 0},
}
DRIFT = {"drifted": ["f0", "f1"], "metrics": {"drift_psi_max": 0.4}}


def _queue(db_url: str, cohort: str) -> int:
    from edgeloop.db import make_engine, utcnow, write_session
    from edgeloop.fleet._monitor_jobs import queue_job

    engine = make_engine(db_url)
    try:
        with write_session(engine) as s:
            row, _ = queue_job(s, "finetune", "blobs", 1, cohort, reason="drift alert (test)",
                               now=utcnow(), detail=DRIFT)
            return int(row.id)
    finally:
        engine.dispose()


def _run(db_url: str, job_id: int) -> dict[str, Any] | None:
    from edgeloop.db import make_engine, read_session
    from edgeloop.fleet import autoheal_run

    engine = make_engine(db_url)
    try:
        with read_session(engine) as s:
            return autoheal_run(s, job_id)
    finally:
        engine.dispose()


def _outcome(fleet_server: Any, job_id: int) -> tuple[list[int], list[dict[str, Any]], str]:
    from edgeloop.client import RolloutClient
    from edgeloop.registry import Registry

    with Registry(fleet_server.db_url, fleet_server.data) as reg:
        versions = sorted(v.version for v in reg.list_versions("blobs"))
    token = (fleet_server.data / "admin-token").read_text().strip()
    rollouts = RolloutClient(fleet_server.url, token).list("blobs")
    from edgeloop.db import make_engine, read_session
    from edgeloop.fleet._monitor_jobs import get_job

    engine = make_engine(fleet_server.db_url)
    try:
        with read_session(engine) as s:
            state = get_job(s, job_id).state
    finally:
        engine.dispose()
    return versions, rollouts, state


_DIES_AFTER_REGISTER = textwrap.dedent("""
    import os, sys
    from pathlib import Path
    import numpy as np
    from edgeloop.loop import AutohealWorker, DatasetCohort, FleetAccess, parse_policy
    import json
    url, db, data, npz, policy = sys.argv[1:6]
    data = Path(data)
    d = np.load(npz)
    fleet = FleetAccess(url, (data / "admin-token").read_text().strip(), db, data,
                        keys=data / "keys", repo=data / "tuf")
    pol = parse_policy(json.loads(policy))
    def die(step, text):
        if step == "register":  # registered in the registry, not yet recorded in the run
            os._exit(3)
    w = AutohealWorker(pol, fleet, lambda job: DatasetCohort(d["x"], d["y"], devices_n=4,
                       severity=0.5), name="doomed", lease_s=3,
                       plan=pol.heal_plan(wait_s=0), on_step=die)
    w.step()
    sys.exit(0)
""")


def test_a_worker_killed_after_registering_is_resumed_without_a_second_version(
        fleet_server: Any, tmp_path: Path) -> None:
    from edgeloop.loop import AutohealWorker, DatasetCohort, FleetAccess, parse_policy

    fleet_server.publish("blobs", 1, scale=1.0, onnx=model_bytes())
    x, y = blobs(800)
    np.savez(tmp_path / "cohort.npz", x=x, y=y)
    job = _queue(fleet_server.db_url, "region=north")
    script = tmp_path / "doomed.py"
    script.write_text(_DIES_AFTER_REGISTER)
    run = subprocess.run([sys.executable, str(script), fleet_server.url, fleet_server.db_url,
                          str(fleet_server.data), str(tmp_path / "cohort.npz"),
                          json.dumps(POLICY)], capture_output=True, text=True, timeout=300,
                         env=dict(os.environ))
    assert run.returncode == 3, run.stdout + run.stderr
    dead = _run(fleet_server.db_url, job)
    assert dead is not None and dead["state"] == "running" and dead["worker"] == "doomed"
    assert "register" not in dead["steps"]  # it died before recording the registration
    versions, rollouts, state = _outcome(fleet_server, job)
    assert versions == [1, 2] and rollouts == [] and state == "running"

    data = fleet_server.data
    token = (data / "admin-token").read_text().strip()
    fleet = FleetAccess(fleet_server.url, token, fleet_server.db_url, data, keys=data / "keys",
                        repo=data / "tuf")
    pol = parse_policy(POLICY)
    steps: list[str] = []
    w = AutohealWorker(pol, fleet, lambda j: DatasetCohort(x, y, devices_n=4, severity=0.5),
                       name="heir", lease_s=3, plan=pol.heal_plan(wait_s=0),
                       on_step=lambda step, text: steps.append(step))
    try:
        assert w.step() is None or False  # the lease still holds: nothing to take over yet
        deadline = time.monotonic() + 30
        res = None
        while res is None and time.monotonic() < deadline:
            time.sleep(1)
            res = w.step()
    finally:
        w.close()
    assert res is not None and res.ok, res
    assert res.version == 2 and steps == ["register", "release", "rollout"]
    versions, rollouts, state = _outcome(fleet_server, job)
    assert versions == [1, 2] and len(rollouts) == 1 and rollouts[0]["to_version"] == 2
    assert state == "succeeded"
    done = _run(fleet_server.db_url, job)
    assert done is not None and done["state"] == "succeeded" and done["attempts"] == 2
    assert done["steps"]["register"] == {"version": 2, "adopted": True}
    assert done["steps"]["rollout"]["id"] == rollouts[0]["id"]


def test_server_auto_heal_resumes_a_run_across_a_restart(fleet_server: Any,
                                                         tmp_path: Path) -> None:
    fleet_server.publish("blobs", 1, scale=1.0, onnx=model_bytes())
    x, y = blobs(800)
    np.savez(tmp_path / "cohort.npz", x=x, y=y)
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps(POLICY))
    auto = ("--auto-heal", str(policy), "--auto-heal-dataset", str(tmp_path / "cohort.npz"),
            "--auto-heal-devices", "4", "--auto-heal-severity", "0.5", "--auto-heal-lease", "5",
            "--auto-heal-wait", "0")
    fleet_server.stop()
    fleet_server.start(extra=auto)
    job = _queue(fleet_server.db_url, "region=north")
    deadline = time.monotonic() + 120
    run = _run(fleet_server.db_url, job)
    while (run is None or run["state"] != "running") and time.monotonic() < deadline:
        time.sleep(0.2)
        run = _run(fleet_server.db_url, job)
    assert run is not None and run["state"] == "running", run
    first = run["worker"]
    fleet_server.stop()  # mid-run: the worker gives its run up and exits with the server
    fleet_server.start(extra=auto)
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline:
        run = _run(fleet_server.db_url, job)
        if run is not None and run["state"] != "running":
            break
        time.sleep(1)
    assert run is not None and run["state"] == "succeeded", (run, fleet_server.child.log)
    assert run["worker"] != first and run["attempts"] >= 2
    versions, rollouts, state = _outcome(fleet_server, job)
    assert versions == [1, 2] and len(rollouts) == 1 and state == "succeeded"
    from edgeloop.db import make_engine, read_session
    from edgeloop.fleet import autoheal_actions

    engine = make_engine(fleet_server.db_url)
    try:
        with read_session(engine) as s:
            acts = [a["action"] for a in reversed(autoheal_actions(s))]
    finally:
        engine.dispose()
    assert acts.count("started") == 1 and "resumed_job" in acts and acts[-1] == "succeeded"
    # the healed version's lineage names the policy (its file's name and sha256), the alert
    # event and the job
    import hashlib

    from edgeloop.registry import Registry

    sha = hashlib.sha256(policy.read_bytes()).hexdigest()
    with Registry(fleet_server.db_url, fleet_server.data) as reg:
        card = reg.resolve("blobs@2").card
    assert card is not None
    roles = {r.role: r for r in card.lineage}
    assert roles["autoheal_policy"].sha256 == sha
    assert roles["autoheal_policy"].name == "auto-heal policy policy.json"
    assert f"job {job}" in (roles["monitor_alert"].name or "")
    assert card.extra["heal"]["policy"] == {"name": "policy.json", "sha256": sha}
    assert card.extra["heal"]["job_id"] == job
    assert run["policy"] == f"{policy} sha256:{sha}"
