"""The local inference endpoint on 127.0.0.1."""

from __future__ import annotations

import httpx
import pytest

from edgeloop.agent import Agent, LocalServer


@pytest.fixture
def served(agent_dir, trust, make_bundle, assignment_for):
    agent = Agent(None, agent_dir, trust=trust)
    b = make_bundle(agent.encryption_key.public_key(), 2)
    agent.install(b, assignment_for(b, 2))
    server = LocalServer(agent.predict_with_version, agent.status).start()
    yield agent, server
    server.close()


def test_predict_over_http(served):
    agent, server = served
    r = httpx.post(server.url + "/v1/predict", json={"inputs": {"x": [[1, 2, 3, 4]]}})
    assert r.status_code == 200
    body = r.json()
    assert len(body.pop("prediction_id")) == 16
    assert body == {"model": "m", "version": 2, "outputs": {"y": [[2.0, 4.0, 6.0, 8.0]]}}
    assert agent.telemetry.requests == 1


def test_status_over_http(served):
    _, server = served
    body = httpx.get(server.url + "/v1/status").json()
    assert (body["model"], body["version"], body["active_slot"], body["health"]) == (
        "m",
        2,
        "a",
        "ok",
    )


def test_bad_inputs_are_400_and_unknown_routes_404(served):
    _, server = served
    r = httpx.post(server.url + "/v1/predict", json={"inputs": {"wrong": [[1, 2, 3, 4]]}})
    assert r.status_code == 400 and "x" in r.json()["error"]
    r = httpx.post(server.url + "/v1/predict", content=b"not json")
    assert r.status_code == 400 and "not JSON" in r.json()["error"]
    assert httpx.get(server.url + "/nope").status_code == 404


def test_no_model_is_503(agent_dir, trust):
    agent = Agent(None, agent_dir, trust=trust)
    server = LocalServer(agent.predict_with_version, agent.status).start()
    try:
        r = httpx.post(server.url + "/v1/predict", json={"inputs": {"x": [[1, 2, 3, 4]]}})
        assert r.status_code == 503 and "no model" in r.json()["error"]
    finally:
        server.close()


def test_listens_on_loopback_only(served):
    _, server = served
    assert server._server.server_address[0] == "127.0.0.1"
