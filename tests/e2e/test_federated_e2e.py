"""Federated rounds on real agents end to end, all on loopback over TLS: a fleet server, three
real agents that hold delayed labels and a fourth that gets revoked; ``edgeloop fl start``
starts the SuperLink with the enrolled, non-revoked devices' node keys and announces the run;
the agents learn of it when they poll, decide under their own policy, start their SuperNodes,
and leave when the run closes; the better candidate lands in the registry."""

from __future__ import annotations

import json
import os
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
from edgeloop.agent import Agent  # noqa: E402
from edgeloop.federated.device import JoinPolicy, Participant  # noqa: E402
from edgeloop.hardware import load_target  # noqa: E402
from live_fleet import free_port  # noqa: E402

READY = {"power": "mains", "network": "unmetered"}


def _agent(path: Path, provisioning: Any) -> Agent:
    a = Agent(None, path, profile=load_target("rpi4"), poll_interval_s=1.0, confirm_after_s=0.0,
              provisioning=provisioning, labels=READY)
    a.participant = Participant.for_agent(a, JoinPolicy(min_labels=50,
                                                        max_recent_requests=1_000_000))
    return a


@pytest.mark.slow
def test_real_agents_join_a_deployed_run_and_the_result_is_registered(
        tls_fleet_server: Any, test_ca: Any, tmp_path: Path) -> None:
    srv = tls_fleet_server
    srv.publish("pm", 1, 1.0, onnx=pm.model_bytes_(1.0), reference=pm.reference())
    agents = [_agent(tmp_path / f"dev{i}", srv.provision()) for i in range(4)]
    procs: list[subprocess.Popen[str]] = []
    try:
        for i, a in enumerate(agents):
            a.poll_sync()  # enrolls, installs pm@1, sends its node key binding
            assert a.model is not None, (a.last_error, a.poll_error)
            assert a.federated_status == "no federated run open for this device"
            x = pm.inputs(200, seed=60 + i)
            y = pm.personal_labels(x)
            for j in range(len(x)):
                pid, _ = a.predict_tracked({"x": x[j : j + 1]})
                assert a.feedback(pid, int(y[j]))
        revoked = agents[3]
        r = httpx.post(f"{srv.url}/v1/admin/devices/{revoked.device_id}/revoke",
                       headers=srv.admin, verify=srv.verify)
        assert r.status_code == 200, r.text
        xv = pm.inputs(400, seed=90)
        np.savez(tmp_path / "val.npz", x=xv, y=pm.personal_labels(xv))
        port = free_port()
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
        proc = subprocess.Popen(
            [sys.executable, "-m", "edgeloop", "fl", "start", "pm@1", "--rounds", "2",
             "--fleet-db", srv.db_url, "--tls-cert", str(test_ca.cert_pem), "--tls-key",
             str(test_ca.key_pem), "--tls-ca", str(test_ca.ca_pem), "--port", str(port),
             "--state", str(tmp_path / "superlink"), "--min-nodes", "3", "--epochs", "5",
             "--lr", "0.5", "--round-timeout", "60", "--dataset", str(tmp_path / "val.npz"),
             "--out", str(tmp_path / "run"), "--db", srv.db_url, "--data", str(srv.data)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        procs.append(proc)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if "3 node keys registered" not in line:
            proc.kill()
            pytest.fail(line + proc.communicate()[1])
        assert "1 revoked" in line, line
        seen: set[str] = set()
        deadline = time.monotonic() + 150
        while proc.poll() is None and time.monotonic() < deadline:
            for a in agents[:3]:
                a.poll_sync()
                seen.add(str(a.federated_status))
            revoked.poll_sync()  # refused by the fleet server: never told of the run
            time.sleep(0.5)
        stdout, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 0, stderr
        assert "registered pm@2" in stdout, stdout
        assert any(s.startswith("joined run") for s in seen), seen
        for a in agents[:3]:
            a.poll_sync()
            assert not a.participant.joined  # type: ignore[union-attr]
        assert revoked.poll_error is not None and not revoked.participant.joined  # type: ignore[union-attr]
        record = json.loads((tmp_path / "run" / "run.json").read_text())
        assert record["runtime"] == "deployment" and record["nodes"] == 3
        assert record["revoked_left_out"] == 1 and record["gate"]["accepted"]
        assert all(r["aggregated"] for r in record["rounds"])
    finally:
        from edgeloop.federated.device import stop_tree

        for p in procs:  # with its SuperLink (a session of its own), if left running
            stop_tree(p, timeout_s=10)
        for a in agents:
            a.close()
