"""Attack 7 of issue 13 (the agent's half): one flipped bit in the (unsigned) ``/v1/keys``
answer was recorded as a failed release and never retried. Now only a verified bundle that
fails its self-test marks a release failed; a key that does not unwrap is retried with back-off.
"""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from edgeloop.agent import Agent
from edgeloop.bundle import parse_container, unwrap_data_key, wrap_data_key
from edgeloop.errors import AgentError


def _recipients(bundle: bytes, fleet: X25519PrivateKey, agent: Agent) -> tuple[dict, dict]:
    """The data key re-wrapped for the agent (what the server sends) and a copy with one bit
    of the wrapped key flipped (what a tampering proxy sends)."""
    manifest = json.loads(parse_container(bundle).manifest)
    good = wrap_data_key(
        unwrap_data_key(manifest["encryption"], fleet), agent.encryption_key.public_key()
    )
    raw = bytearray(base64.b64decode(good["wrapped_key"]))
    raw[3] ^= 0x01
    return good, {**good, "wrapped_key": base64.b64encode(bytes(raw)).decode()}


@pytest.fixture
def setup(agent_dir, trust, make_bundle, assignment_for) -> dict[str, Any]:
    agent = Agent(None, agent_dir, trust=trust)
    fleet = X25519PrivateKey.generate()
    bundle = make_bundle(fleet.public_key(), 2)
    good, flipped = _recipients(bundle, fleet, agent)
    return {
        "agent": agent,
        "bundle": bundle,
        "assignment": assignment_for(bundle, 2),
        "good": good,
        "flipped": flipped,
    }


def test_a_flipped_key_is_refused_but_not_remembered_and_the_retry_installs(setup):
    agent, bundle, a = setup["agent"], setup["bundle"], setup["assignment"]

    assert agent.install(bundle, a, setup["flipped"]) is False

    assert a.sha256 not in agent.state.failed
    assert agent.telemetry.metrics()["install_failures"] == 1.0  # retried, not "rejected"
    assert "wrapped key was altered" in (agent.last_error or "")
    assert agent.install(bundle, a, setup["good"]) is True
    assert float(agent.predict({"x": np.ones((1, 4), np.float32)})["y"][0, 0]) == 2.0


def test_apply_turns_the_refusal_into_a_poll_failure_so_the_agent_backs_off(setup, monkeypatch):
    agent, bundle, a = setup["agent"], setup["bundle"], setup["assignment"]
    agent.identity = {"device_id": "d-1"}  # enrolled, as far as apply cares
    agent.server_url = "http://127.0.0.1:9"
    answers = [setup["flipped"], setup["good"]]

    class Client:
        async def recipient(self, device_id: str, target: str) -> dict[str, Any]:
            return answers.pop(0)

    monkeypatch.setattr("edgeloop.agent._agent.fetch_target", lambda *args: bundle)
    monkeypatch.setattr("edgeloop.agent._agent.check_listed", lambda *args: None)
    monkeypatch.setattr(agent, "_client", lambda: Client())
    monkeypatch.setattr(agent, "_tuf", lambda: None)  # fetch_target is replaced above

    with pytest.raises(AgentError, match="wrapped key was altered"):
        asyncio.run(agent.apply(a))
    first = agent.backoff.failed()  # what poll_once does with a RETRYABLE error
    assert first <= agent.backoff.cap
    assert asyncio.run(agent.apply(a)) is True
    assert agent.state.current is not None and agent.state.current.version == 2


def test_a_bundle_that_fails_its_self_test_is_still_remembered(
    agent_dir, trust, make_bundle, assignment_for
):
    agent = Agent(None, agent_dir, trust=trust)
    bad = make_bundle(agent.encryption_key.public_key(), 2, kind="wrong-selftest")
    a = assignment_for(bad, 2)
    assert agent.install(bad, a) is False
    assert a.sha256 in agent.state.failed
