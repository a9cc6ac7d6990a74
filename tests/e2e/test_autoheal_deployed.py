"""Auto-heal with the fine-tune on real agents: the fleet server (``--auto-heal POLICY`` with
``federation: deployment``), two ``edgeloop agent --federated`` processes and the heal's
SuperLink (``flower-superlink``, started by the server's worker) are separate processes, all on
loopback over TLS with the test CA.

The agents' users label by another head than the fleet model's (the cohort's labels drifted);
the drift alert's fine-tune job is queued for their cohort. The worker starts a SuperLink with
the cohort's node keys and announces the run; the agents join with SuperNodes on their own
delayed labels. The server is restarted after the first round: the worker stops its SuperLink
as it exits, the restarted server's worker takes the run over, starts a SuperLink of its own
and resumes the Flower run from the first round's checkpoint (each round once). The cohort is
healed once: one job, one run (two attempts), one new version, one rollout."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

pytest.importorskip("flwr")

import personal_model as pm  # noqa: E402

pytestmark = pytest.mark.slow

AGENTS = 2
LABELLED = 60
POLICY = {
    "rules": [{"name": "drift", "match": {"kinds": ["drift"]}, "action": "heal"}],
    "budget": {"rounds": 2, "max_devices": 4, "max_minutes": 5},
    "rollout": {"stages": [50, 100], "soak_s": 1},
    "limits": {"max_runs_per_day": 5, "cooldown_after_failure_s": 0},
    "federation": {"mode": "deployment", "min_nodes": AGENTS, "round_timeout_s": 60},
}
DRIFT = {"drifted": ["f0", "f1"], "metrics": {"drift_psi_max": 0.4}}


def _db(db_url: str, fn: Any) -> Any:
    from edgeloop.db import make_engine, write_session

    engine = make_engine(db_url)
    try:
        with write_session(engine) as s:
            return fn(s)
    finally:
        engine.dispose()


def _queue(db_url: str) -> int:
    from edgeloop.db import utcnow
    from edgeloop.fleet._monitor_jobs import queue_job

    return int(_db(db_url, lambda s: queue_job(
        s, "finetune", "pm", 1, "site=north", reason="drift alert (test)", now=utcnow(),
        detail=DRIFT)[0].id))


def _run(db_url: str, job_id: int) -> dict[str, Any] | None:
    from edgeloop.fleet import autoheal_run

    return _db(db_url, lambda s: autoheal_run(s, job_id))  # type: ignore[no-any-return]


def _agent(srv: Any, tmp: Path, i: int) -> tuple[subprocess.Popen[str], str]:
    prov = srv.provision().save(tmp / f"dev{i}.json")
    with open(tmp / f"dev{i}.log", "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "edgeloop", "agent", "--provision", str(prov), "--state",
             str(tmp / f"dev{i}"), "--serve-port", "0", "--poll-interval", "1", "--profile",
             "rpi4", "--label", "site=north", "--label", "power=mains", "--label",
             "network=unmetered", "--federated", "--federated-min-labels", "30"],
            stdout=subprocess.PIPE, stderr=log, text=True, start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("{"), (line, (tmp / f"dev{i}.log").read_text()[-2000:])
    return proc, str(json.loads(line)["serving"])


def _feed(url: str, seed: int) -> None:
    """The device's users: predictions, then their (drifted) labels as delayed feedback."""
    x = pm.inputs(LABELLED, seed=seed)
    y = pm.personal_labels(x)
    with httpx.Client(base_url=url, timeout=30) as c:
        deadline = time.monotonic() + 60
        while c.get("/v1/status").json().get("model") is None:
            assert time.monotonic() < deadline, c.get("/v1/status").json()
            time.sleep(0.3)
        for j in range(LABELLED):
            r = c.post("/v1/predict", json={"inputs": {"x": x[j:j + 1].tolist()}})
            assert r.status_code == 200, r.text
            f = c.post("/v1/feedback", json={"prediction_id": r.json()["prediction_id"],
                                             "label": int(y[j])})
            assert f.status_code == 200 and f.json()["matched"], f.text


def _until(what: str, fn: Any, timeout_s: float, srv: Any) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = fn()
        if got:
            return got
        time.sleep(0.5)
    pytest.fail(f"{what} not within {timeout_s:g} s; server log: "
                f"{srv.child.log.read_text(errors='replace')[-3000:]}")


def test_auto_heal_fine_tunes_on_agents_supernodes_across_a_server_restart(
        tls_fleet_server: Any, test_ca: Any, tmp_path: Path) -> None:
    srv = tls_fleet_server
    srv.publish("pm", 1, 1.0, onnx=pm.model_bytes_(1.0), reference=pm.reference())
    x = pm.inputs(400, seed=7)
    np.savez(tmp_path / "cohort.npz", x=x, y=pm.personal_labels(x))
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps(POLICY))
    auto = ("--auto-heal", str(policy), "--auto-heal-dataset", str(tmp_path / "cohort.npz"),
            "--auto-heal-devices", "2", "--auto-heal-severity", "0", "--auto-heal-lease", "5",
            "--auto-heal-wait", "0", "--auto-heal-superlink-ca", str(test_ca.ca_pem))
    srv.stop()
    srv.start(extra=auto)
    agents: list[subprocess.Popen[str]] = []
    try:
        urls = []
        for i in range(AGENTS):
            proc, url = _agent(srv, tmp_path, i)
            agents.append(proc)
            urls.append(url)
        for i, url in enumerate(urls):
            _feed(url, seed=60 + i)
        time.sleep(3)  # two polls: the agents' node key bindings sent, the devices idle again
        job = _queue(srv.db_url)
        progress = (srv.data / "autoheal-federation" / f"job-{job}" / "runs" / f"fl-job-{job}"
                    / "progress.jsonl")

        def rounds() -> list[int]:
            try:
                return [json.loads(line)["round"] for line in progress.read_text().splitlines()]
            except OSError:
                return []

        _until("the first federated round", rounds, 150, srv)
        first = _run(srv.db_url, job)
        assert first is not None and first["state"] == "running", first
        assert "register" not in first["steps"]  # mid fine-tune
        srv.stop()  # mid-run: the worker stops its SuperLink and gives the run up
        srv.start(extra=auto)
        done = _until("the healed job", lambda: (r := _run(srv.db_url, job)) is not None
                      and r["state"] != "running" and r, 240, srv)
        assert done["state"] == "succeeded", done
        assert done["worker"] != first["worker"] and done["attempts"] >= 2
        # the Flower run resumed from the checkpoint: each round once, by two SuperLinks
        assert rounds() == [1, 2], rounds()
        home = srv.data / "autoheal-federation" / f"job-{job}"
        assert sorted(p.name for p in home.glob("superlink-*")) == ["superlink-1", "superlink-2"]
        assert not (home / "superlink.pid").exists()
        result = done["result"]
        assert result["run_id"] == f"fl-job-{job}" and result["gate"]["accepted"], result

        from edgeloop.client import RolloutClient
        from edgeloop.fleet import autoheal_actions
        from edgeloop.fleet._monitor_jobs import get_job
        from edgeloop.registry import Registry

        with Registry(srv.db_url, srv.data) as reg:
            assert sorted(v.version for v in reg.list_versions("pm")) == [1, 2]
            card = reg.resolve("pm@2").card
        assert card is not None and card.extra["heal"]["job_id"] == job
        token = (srv.data / "admin-token").read_text().strip()
        rollouts = RolloutClient(srv.url, token, verify=srv.verify).list("pm")
        assert len(rollouts) == 1 and rollouts[0]["to_version"] == 2
        assert _db(srv.db_url, lambda s: get_job(s, job).state) == "succeeded"
        acts = [a["action"] for a in reversed(_db(srv.db_url, lambda s: autoheal_actions(s)))]
        assert acts.count("started") == 1 and "resumed_job" in acts and acts[-1] == "succeeded"
        # every announcement of the heal's runs is closed: the agents leave
        from edgeloop.db import FederatedRunRow

        runs = _db(srv.db_url, lambda s: [(r.id, r.closed_at is not None)
                                          for r in s.query(FederatedRunRow).all()])
        assert sorted(runs) == [(f"job-{job}.1", True), (f"job-{job}.2", True)], runs
    finally:
        srv.stop()
        from edgeloop.federated.device._process import alive, descendants, stop_tree

        trees = [descendants(p.pid) for p in agents]  # SuperNodes: sessions of their own
        for p in agents:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
        for p, tree in zip(agents, trees, strict=True):
            stop_tree(p, timeout_s=20)  # waits; SIGKILL after; then what it started
            for pid, start in tree:  # SuperNodes and ClientApps a killed agent left behind
                if alive((pid, start)):
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        if tree[(pid, start)] != os.getpgrp():
                            os.killpg(tree[(pid, start)], signal.SIGKILL)
                        os.kill(pid, signal.SIGKILL)
