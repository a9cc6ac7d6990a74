"""Monitoring in the agent: the bundle's signed reference, a sketch per window, prediction ids,
delayed labels (API and local endpoint), the sketch in the telemetry report."""

from __future__ import annotations

import httpx
import numpy as np
import pytest

from classifier_model import classifier_bytes, reference, sample
from edgeloop.agent import Agent, LocalServer
from edgeloop.artifacts import ModelCard, sha256_bytes
from edgeloop.bundle import pack, verify
from edgeloop.errors import InputError
from edgeloop.monitor.sketch import MonitorReference, WindowSketch


@pytest.fixture(scope="module")
def ref() -> MonitorReference:
    return reference()


@pytest.fixture
def watched(agent_dir, trust, release_key, assignment_for, ref):
    agent = Agent(None, agent_dir, trust=trust)
    model = classifier_bytes()
    card = ModelCard(name="m", sha256=sha256_bytes(model))
    b = pack(model, card, 3, release_key, [agent.encryption_key.public_key()], reference=ref)
    assert agent.install(b, assignment_for(b, 3))
    yield agent, b
    agent.close()


def test_the_reference_is_signed_into_the_manifest(watched, trust, ref):
    _, bundle = watched
    manifest = verify(bundle, trust)
    assert MonitorReference.from_dict(manifest.monitor).digest() == ref.digest()


def test_a_reference_that_does_not_fit_the_model_is_refused(release_key, ref):
    from onnx_writer import FLOAT, model_bytes

    model = model_bytes([("Identity", ["x"], ["y"])], [("x", FLOAT, ["n", 4])],
                        [("y", FLOAT, ["n", 4])])
    card = ModelCard(name="m", sha256=sha256_bytes(model))
    with pytest.raises(InputError, match="3 classes"):
        pack(model, card, 1, release_key, [], reference=ref)


def test_every_inference_goes_into_the_window_sketch(watched, ref):
    agent, _ = watched
    x, _ = sample(40, np.random.default_rng(0))
    ids = [agent.predict_tracked({"x": x[i : i + 1]})[0] for i in range(40)]
    assert len(set(ids)) == 40
    report = agent.report()
    sketch = WindowSketch.from_dict(report.sketch, ref)
    assert (sketch.n, sketch.n_outputs, int(sketch.pred.sum())) == (40, 40, 40)
    assert sketch.start is not None and sketch.end is not None
    assert agent.report().sketch is None  # the next window starts empty


def test_delayed_labels_count_into_the_window(watched, ref):
    agent, _ = watched
    x, _ = sample(10, np.random.default_rng(1))
    pids = []
    for i in range(10):
        pid, out = agent.predict_tracked({"x": x[i : i + 1]})
        pids.append((pid, int(np.argmax(out["probs"]))))
    assert agent.feedback(pids[0][0], pids[0][1]) is True  # right
    assert agent.feedback(pids[1][0], (pids[1][1] + 1) % 3) is True  # wrong
    assert agent.feedback(pids[0][0], 0) is False  # labelled already
    assert agent.feedback("never-made", 0) is False
    sketch = WindowSketch.from_dict(agent.report().sketch, ref)
    assert (sketch.fb_n, sketch.fb_correct) == (2, 1)
    assert agent.telemetry.totals["feedback"] == 2
    assert agent.telemetry.totals["feedback_unmatched"] == 2


def test_feedback_over_the_local_endpoint(watched):
    agent, _ = watched
    server = LocalServer(agent.predict_with_version, agent.status, feedback=agent.feedback).start()
    try:
        r = httpx.post(server.url + "/v1/predict", json={"inputs": {"x": [[0.5, 0, 0, 1]]}})
        body = r.json()
        pid = body["prediction_id"]
        pred = int(np.argmax(body["outputs"]["probs"][0]))
        r = httpx.post(server.url + "/v1/feedback", json={"prediction_id": pid, "label": pred})
        assert (r.status_code, r.json()) == (200, {"matched": True})
        r = httpx.post(server.url + "/v1/feedback", json={"prediction_id": pid, "label": 7})
        assert r.status_code == 400 and "label 7" in r.json()["error"]
        r = httpx.post(server.url + "/v1/feedback", json={"prediction_id": 5, "label": 1})
        assert r.status_code == 400
        r = httpx.post(server.url + "/v1/feedback", content=b"x" * 5000)
        assert r.status_code == 400 and "5000 bytes" in r.json()["error"]
    finally:
        server.close()
    assert agent.report().sketch["fb_n"] == 1


def test_a_model_without_reference_is_not_watched(agent_dir, trust, make_bundle,
                                                  assignment_for, x1):
    agent = Agent(None, agent_dir, trust=trust)
    b = make_bundle(agent.encryption_key.public_key(), 2)
    agent.install(b, assignment_for(b, 2))
    pid, _ = agent.predict_tracked({"x": x1})
    assert pid and agent.report().sketch is None
    with pytest.raises(Exception, match="no monitoring reference"):
        agent.feedback(pid, 0)


class _Server:
    """The agent's side of the protocol, answered in memory: refuses any sketch (as a server
    without the version's reference does) and records what it was sent."""

    def __init__(self) -> None:
        self.reports: list = []

    async def telemetry(self, report) -> None:
        from edgeloop.errors import FleetError

        if report.sketch is not None:
            raise FleetError("POST /v1/telemetry: server answered 400: m@3 has no monitoring "
                             "reference on this server")
        self.reports.append(report)

    async def checkin(self, device_id, body):
        from edgeloop.protocol import CheckInResponse

        return CheckInResponse(device_id=device_id, assignment=None, poll_interval_s=60.0,
                               server_time="2026-01-01T00:00:00Z")


def test_a_refused_sketch_does_not_cost_the_window_its_telemetry(watched, monkeypatch):
    import asyncio

    agent, _ = watched
    server = _Server()

    async def enroll() -> str:
        return "d-1"

    monkeypatch.setattr(agent, "enroll", enroll)
    monkeypatch.setattr(agent, "_client", lambda: server)
    x, _ = sample(5, np.random.default_rng(3))
    for i in range(5):
        agent.predict({"x": x[i : i + 1]})
    asyncio.run(agent.poll_once())
    assert agent.poll_error is None
    assert [r.metrics["requests"] for r in server.reports] == [5.0]
    assert server.reports[0].sketch is None
    assert agent.telemetry.totals["sketches_refused"] == 1
    assert "no monitoring reference" in (agent.last_error or "")
