"""The install state machine on real bundles: A/B slots, self-test, rollback, faults."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgeloop.agent import Agent
from edgeloop.errors import AgentError, FileError, ModelError

STEPS = ("begin", "staged", "loaded", "selftested", "switched")


class Crash(BaseException):
    """Stands for the process dying at a step (BaseException: nothing may swallow it)."""


def _agent(d: Path, trust: Any, **kw: Any) -> Agent:
    return Agent(None, d, trust=trust, **kw)


def _served_scale(agent: Agent, x1: np.ndarray) -> float:
    return float(agent.predict({"x": x1})["y"][0, 0])


def test_first_install_serves_and_survives_restart(
    agent_dir, trust, make_bundle, assignment_for, x1
):
    agent = _agent(agent_dir, trust)
    assert agent.model is None and agent.health() == "failing"
    b1 = make_bundle(agent.encryption_key.public_key(), 1)
    assert agent.install(b1, assignment_for(b1, 1)) is True
    assert _served_scale(agent, x1) == 1.0
    assert agent.state.active == "a" and agent.state.known_good == "a" and not agent.state.trial

    again = _agent(agent_dir, trust)
    assert again.model is not None and again.model.version == 1
    assert _served_scale(again, x1) == 1.0


def test_second_install_goes_to_other_slot_on_trial(
    agent_dir, trust, make_bundle, assignment_for, x1
):
    agent = _agent(agent_dir, trust, confirm_after_s=0.0)
    pub = agent.encryption_key.public_key()
    b1, b2 = make_bundle(pub, 1), make_bundle(pub, 2)
    agent.install(b1, assignment_for(b1, 1))
    assert agent.install(b2, assignment_for(b2, 2)) is True
    assert (agent.state.active, agent.state.known_good, agent.state.trial) == ("b", "a", True)
    assert _served_scale(agent, x1) == 2.0
    agent.check_trial()
    assert (agent.state.active, agent.state.known_good, agent.state.trial) == ("b", "b", False)


def test_trial_is_not_confirmed_before_its_time(agent_dir, trust, make_bundle, assignment_for):
    agent = _agent(agent_dir, trust, confirm_after_s=3600.0)
    pub = agent.encryption_key.public_key()
    b1, b2 = make_bundle(pub, 1), make_bundle(pub, 2)
    agent.install(b1, assignment_for(b1, 1))
    agent.install(b2, assignment_for(b2, 2))
    agent.check_trial()
    assert (agent.state.active, agent.state.known_good, agent.state.trial) == ("b", "a", True)
    # the slot left behind still holds v1: the state names both
    assert agent.state.slots["a"].version == 1 and agent.state.slots["b"].version == 2


@pytest.mark.parametrize("step", STEPS)
def test_crash_at_every_step_leaves_a_working_model(
    step, agent_dir, trust, make_bundle, assignment_for, x1
):
    agent = _agent(agent_dir, trust)
    pub = agent.encryption_key.public_key()
    b1, b2 = make_bundle(pub, 1), make_bundle(pub, 2)
    agent.install(b1, assignment_for(b1, 1))

    def crash(name: str) -> None:
        if name == step:
            raise Crash(name)

    agent.slots.on_step = crash
    with pytest.raises(Crash):
        agent.install(b2, assignment_for(b2, 2))

    restarted = _agent(agent_dir, trust, confirm_after_s=0.0)
    expected = 2.0 if step == "switched" else 1.0
    assert _served_scale(restarted, x1) == expected
    # and the install can be completed afterwards
    restarted.check_trial()
    restarted.install(b2, assignment_for(b2, 2))
    assert _served_scale(restarted, x1) == 2.0


def test_bad_selftest_is_refused_and_old_model_kept(
    agent_dir, trust, make_bundle, assignment_for, x1
):
    agent = _agent(agent_dir, trust)
    pub = agent.encryption_key.public_key()
    b1, bad = make_bundle(pub, 1), make_bundle(pub, 2, kind="wrong-selftest")
    agent.install(b1, assignment_for(b1, 1))
    a2 = assignment_for(bad, 2)
    assert agent.install(bad, a2) is False
    assert _served_scale(agent, x1) == 1.0
    assert agent.state.active == "a" and agent.state.slots["b"] is None
    assert agent.telemetry.metrics()["selftest_failures"] == 1.0
    assert a2.sha256 in agent.state.failed
    assert not agent.store.slot_path("b").exists()
    # the same bundle is not tried again
    assert agent.install(bad, a2) is False
    assert agent.telemetry.metrics()["selftest_failures"] == 1.0


def test_older_version_refused_without_signed_rollback(
    agent_dir, trust, make_bundle, assignment_for, x1
):
    agent = _agent(agent_dir, trust)
    pub = agent.encryption_key.public_key()
    b1, b2 = make_bundle(pub, 1), make_bundle(pub, 2)
    agent.install(b2, assignment_for(b2, 2))
    assert agent.install(b1, assignment_for(b1, 1)) is False
    assert "older" in (agent.last_error or "")
    assert _served_scale(agent, x1) == 2.0
    assert agent.install(b1, assignment_for(b1, 1, rollback=True)) is True
    assert _served_scale(agent, x1) == 1.0


def test_rollback_switches_to_known_good_without_download(
    agent_dir, trust, make_bundle, assignment_for, x1
):
    agent = _agent(agent_dir, trust, confirm_after_s=0.0)
    pub = agent.encryption_key.public_key()
    b1, b2 = make_bundle(pub, 1), make_bundle(pub, 2)
    agent.install(b1, assignment_for(b1, 1))
    agent.install(b2, assignment_for(b2, 2))
    agent.check_trial()
    assert agent.state.known_good == "b"  # confirmed: v1 is now only the previous version
    # no bundle bytes given: a download would be needed to install, a switch needs none
    assert agent.install(b"", assignment_for(b1, 1, rollback=True)) is True
    assert _served_scale(agent, x1) == 1.0
    assert agent.state.active == "a"
    assert agent.telemetry.metrics()["switches"] == 1.0
    # without the signed rollback flag the same switch is refused
    agent.install(b"", assignment_for(b2, 2))
    assert agent.state.active == "b"
    assert agent.install(b"", assignment_for(b1, 1)) is False
    assert agent.state.active == "b"


def test_corrupted_download_keeps_model_and_retries(
    agent_dir, trust, make_bundle, assignment_for, x1
):
    agent = _agent(agent_dir, trust)
    pub = agent.encryption_key.public_key()
    b1, b2 = make_bundle(pub, 1), make_bundle(pub, 2)
    agent.install(b1, assignment_for(b1, 1))
    a2 = assignment_for(b2, 2)
    broken = bytearray(b2)
    broken[len(broken) // 2] ^= 0xFF
    assert agent.install(bytes(broken), a2) is False
    assert agent.install(b2[:-10], a2) is False
    assert _served_scale(agent, x1) == 1.0
    assert agent.telemetry.metrics()["corrupt_downloads"] == 2.0
    assert a2.sha256 not in agent.state.failed  # the release is fine: retried
    assert agent.install(b2, a2) is True
    assert _served_scale(agent, x1) == 2.0


def test_full_disk_keeps_model_and_retries(agent_dir, trust, make_bundle, assignment_for, x1):
    full = {"on": False}

    def writer(path: Path, data: bytes, mode: int | None) -> None:
        from edgeloop._io import atomic_write_bytes

        if full["on"] and path.name == "bundle.elb":
            raise FileError(f"cannot write {str(path)!r}: No space left on device")
        atomic_write_bytes(path, data, mode)

    agent = _agent(agent_dir, trust, writer=writer)
    pub = agent.encryption_key.public_key()
    b1, b2 = make_bundle(pub, 1), make_bundle(pub, 2)
    agent.install(b1, assignment_for(b1, 1))
    full["on"] = True
    assert agent.install(b2, assignment_for(b2, 2)) is False
    assert "No space left" in (agent.last_error or "")
    assert _served_scale(agent, x1) == 1.0
    assert agent.telemetry.metrics()["install_failures"] == 1.0
    full["on"] = False
    assert agent.install(b2, assignment_for(b2, 2)) is True
    assert _served_scale(agent, x1) == 2.0


def test_crash_on_load_at_restart_returns_to_known_good(
    agent_dir, trust, make_bundle, assignment_for, x1
):
    agent = _agent(agent_dir, trust)
    pub = agent.encryption_key.public_key()
    b1, b2 = make_bundle(pub, 1), make_bundle(pub, 2)
    agent.install(b1, assignment_for(b1, 1))
    agent.install(b2, assignment_for(b2, 2))
    agent.close()
    slot_b = agent.store.slot_path("b")
    data = bytearray(slot_b.read_bytes())
    data[-5] ^= 0x01
    slot_b.write_bytes(bytes(data))

    restarted = _agent(agent_dir, trust)
    assert _served_scale(restarted, x1) == 1.0
    assert restarted.state.active == "a" and not restarted.state.trial
    assert "failed to load" in (restarted.last_error or "")


def test_unconfirmed_trial_is_abandoned_after_repeated_restarts(
    agent_dir, trust, make_bundle, assignment_for, x1
):
    agent = _agent(agent_dir, trust)
    pub = agent.encryption_key.public_key()
    b1, b2 = make_bundle(pub, 1), make_bundle(pub, 2)
    agent.install(b1, assignment_for(b1, 1))
    agent.install(b2, assignment_for(b2, 2))
    first = _agent(agent_dir, trust)  # a restart while on trial: give it one more chance
    assert _served_scale(first, x1) == 2.0
    second = _agent(agent_dir, trust)  # it died again before confirming: back to v1
    assert _served_scale(second, x1) == 1.0
    assert second.state.failed


def test_errors_after_switch_return_to_known_good(
    agent_dir, trust, make_bundle, assignment_for, x1
):
    agent = _agent(agent_dir, trust, trial_min_requests=3)
    pub = agent.encryption_key.public_key()
    b1, fragile = make_bundle(pub, 1), make_bundle(pub, 2, kind="fragile")
    agent.install(b1, assignment_for(b1, 1))
    assert agent.install(fragile, assignment_for(fragile, 2)) is True
    x2 = np.ones((2, 4), dtype=np.float32)
    for _ in range(3):
        with pytest.raises(ModelError):
            agent.predict({"x": x2})
    assert agent.state.active == "a" and agent.model is not None and agent.model.version == 1
    assert agent.predict({"x": x2})["y"].shape == (2, 4)
    assert agent.telemetry.metrics()["rollbacks"] == 1.0
    # the server counts it against the rollout of that version (rollout controls)
    assert "@2 fell back: 3 of 3 requests failed after the switch" in str(agent.last_error)


def test_state_and_keys_are_private(agent_dir, trust, make_bundle, assignment_for):
    agent = _agent(agent_dir, trust)
    b1 = make_bundle(agent.encryption_key.public_key(), 1)
    agent.install(b1, assignment_for(b1, 1))
    for p in ("keys/signing.pem", "keys/encryption.pem", "slots/a/bundle.elb"):
        assert os.stat(agent_dir / p).st_mode & 0o777 == 0o600, p
    state = json.loads((agent_dir / "state.json").read_text())
    assert state["active"] == "a"
    # the bundle stays encrypted at rest: the ONNX graph's op names are not in the slot file
    assert b"Identity" not in (agent_dir / "slots/a/bundle.elb").read_bytes()


def test_predict_without_model_is_an_agent_error(agent_dir, trust, x1):
    agent = _agent(agent_dir, trust)
    with pytest.raises(AgentError, match="no model installed"):
        agent.predict({"x": x1})
