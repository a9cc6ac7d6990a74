"""On-device personalization end to end: a real server on loopback, a real agent.

A drifted device (its users label by another rule than the fleet head's) fits a personal head on
its delayed labels and serves with it, and the server receives its held-out gain in telemetry;
after a restart it refuses a tampered head and serves the fleet head; a new base version from
the fleet drops the head. The head itself never reaches the server.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

import personal_model as pm
from edgeloop.agent import Agent
from edgeloop.hardware import load_target


def _agent(srv: Any, path: Any, provisioning: Any) -> Agent:
    return Agent(None, path, profile=load_target("rpi4"), poll_interval_s=1.0,
                 confirm_after_s=0.0, provisioning=provisioning, personalize_every=150)


def _label(agent: Agent, x: np.ndarray) -> None:
    y = pm.personal_labels(x)
    for i in range(len(x)):
        pid, _ = agent.predict_tracked({"x": x[i : i + 1]})
        assert agent.feedback(pid, int(y[i]))


def _served(agent: Agent, x: np.ndarray) -> np.ndarray:
    return agent.predict({"x": x})["probs"].argmax(axis=1)  # type: ignore[no-any-return]


def _metrics(srv: Any, device_id: str) -> list[dict[str, float]]:
    return [r["metrics"] for r in srv.device(device_id)["reports"]]


@pytest.mark.slow
def test_a_personalized_device_serves_refuses_tampering_and_drops_on_a_new_base(
    fleet_server, tmp_path
):
    srv = fleet_server
    ref = pm.reference()
    srv.publish("pm", 1, 1.0, onnx=pm.model_bytes_(1.0), reference=ref)
    state = tmp_path / "dev"
    provisioning = srv.provision()
    a = _agent(srv, state, provisioning)
    a.poll_sync()
    assert a.model is not None and a.model.version == 1, (a.last_error, a.poll_error)
    test = pm.inputs(300, seed=50)
    assert np.mean(_served(a, test) == pm.personal_labels(test)) < 0.5  # the fleet head

    _label(a, pm.inputs(200, seed=51))
    a.poll_sync()  # 200 new labels >= 150: fits the head, reports its gain
    head = a.personal
    assert head is not None and head.serving and head.gain > 0.3, head
    assert np.mean(_served(a, test) == pm.personal_labels(test)) > 0.8  # its own head
    a.poll_sync()
    sent = _metrics(srv, str(a.device_id))
    assert any(m.get("personal_active") == 1.0 and m.get("personal_gain", 0) > 0.3 for m in sent)
    # the head never leaves the device: no report carries more than its two gauges
    assert all(set(m) & {"weight", "bias"} == set() for m in sent)
    device_id = str(a.device_id)
    a.close()

    # tampered on disk: refused at the restart, the fleet head serves, the refusal is reported
    path = state / "personal" / "head.json"
    outer = json.loads(path.read_bytes())
    body = json.loads(outer["payload"])
    body["bias"] = body["bias"][::-1]
    outer["payload"] = json.dumps(body, sort_keys=True, separators=(",", ":"))
    path.write_text(json.dumps(outer))
    b = _agent(srv, state, provisioning)
    assert b.personal is None and not path.exists()
    assert np.array_equal(_served(b, test), pm.fleet_labels(test))
    b.poll_sync()
    assert any(m.get("personal_refusals") == 1 and m.get("personal_active") == 0.0
               for m in _metrics(srv, device_id))

    # personalized again, then the fleet moves to version 2: the head is dropped
    _label(b, pm.inputs(200, seed=52))
    b.poll_sync()
    assert b.personal is not None and b.personal.serving
    srv.publish("pm", 2, 1.0, onnx=pm.model_bytes_(1.5), reference=ref)
    b.poll_sync()
    assert b.model is not None and b.model.version == 2, (b.last_error, b.poll_error)
    assert b.personal is None and not path.exists()
    assert np.array_equal(_served(b, test), pm.fleet_labels(test))
    b.poll_sync()
    assert any(m.get("personal_drops") == 1 for m in _metrics(srv, device_id))
    b.close()
