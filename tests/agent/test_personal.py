"""On-device personalization: a personal head fitted on the device's delayed labels, served only
when it beats the fleet head on held-out samples, stored under a device-held HMAC key, bound to
the base bundle; tampered or foreign heads refused, heads of an old base dropped (device-only)."""

from __future__ import annotations

import json
import os
import stat

import numpy as np
import pytest

import personal_model as pm
from edgeloop.agent import Agent, PersonalConfig, fit_personal, load_personal
from edgeloop.artifacts import ModelCard, sha256_bytes
from edgeloop.bundle import pack
from edgeloop.errors import AgentError, DataError, InputError, SecurityError


@pytest.fixture(scope="module")
def ref():  # type: ignore[no-untyped-def]
    return pm.reference()


def _bundle(agent: Agent, release_key, ref, version: int, scale: float = 1.0) -> bytes:  # type: ignore[no-untyped-def]
    model = pm.model_bytes_(scale)
    card = ModelCard(name="m", sha256=sha256_bytes(model))
    return pack(model, card, version, release_key, [agent.encryption_key.public_key()],
                reference=ref)


def _label(agent: Agent, x: np.ndarray, labels: np.ndarray) -> None:
    for i in range(len(x)):
        pid, _ = agent.predict_tracked({"x": x[i : i + 1]})
        assert agent.feedback(pid, int(labels[i]))


@pytest.fixture
def drifted(agent_dir, trust, release_key, assignment_for, ref):  # type: ignore[no-untyped-def]
    agent = Agent(None, agent_dir, trust=trust)
    b = _bundle(agent, release_key, ref, 1)
    assert agent.install(b, assignment_for(b, 1))
    x = pm.inputs(240, seed=1)
    _label(agent, x, pm.personal_labels(x))
    yield agent
    agent.close()


def test_a_drifted_device_serves_with_its_personal_head(drifted):  # type: ignore[no-untyped-def]
    head = drifted.personalize()
    assert head.serving and head.gain > 0.3 and head.personal_accuracy > 0.8
    assert head.n_train + head.n_held_out == 240 and head.n_held_out == 60
    x = pm.inputs(300, seed=2)
    served = drifted.predict({"x": x})["probs"]
    assert np.allclose(served.sum(axis=1), 1.0, atol=1e-4)  # still probabilities
    assert np.mean(served.argmax(axis=1) == pm.personal_labels(x)) > 0.8
    metrics = drifted.report().metrics
    assert metrics["personal_active"] == 1.0
    assert metrics["personal_gain"] == pytest.approx(head.gain)
    path = drifted.store.personal_file
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert set(json.loads(path.read_text())) == {"payload", "hmac_sha256"}


def test_the_head_survives_a_restart(drifted, agent_dir, trust):  # type: ignore[no-untyped-def]
    head = drifted.personalize()
    drifted.close()
    again = Agent(None, agent_dir, trust=trust)
    try:
        assert again.personal is not None and again.personal.serving
        assert np.array_equal(again.personal.weight, head.weight)
        x = pm.inputs(50, seed=3)
        assert np.array_equal(again.predict({"x": x})["probs"].argmax(axis=1),
                              (pm.embed(x) @ head.weight + head.bias).argmax(axis=1))
    finally:
        again.close()


def test_a_head_that_does_not_beat_the_fleet_head_is_kept_but_not_served(
    agent_dir, trust, release_key, assignment_for, ref
):  # type: ignore[no-untyped-def]
    agent = Agent(None, agent_dir, trust=trust)
    try:
        b = _bundle(agent, release_key, ref, 1)
        agent.install(b, assignment_for(b, 1))
        x = pm.inputs(200, seed=4)
        _label(agent, x, pm.fleet_labels(x))  # the fleet head is right on every sample
        head = agent.personalize()
        assert not head.serving and head.fleet_accuracy == 1.0
        assert np.array_equal(agent.predict({"x": x})["probs"].argmax(axis=1), pm.fleet_labels(x))
        assert agent.report().metrics["personal_active"] == 0.0
    finally:
        agent.close()


def test_a_tampered_head_is_refused_and_the_fleet_head_serves(drifted, agent_dir, trust, caplog):  # type: ignore[no-untyped-def]
    drifted.personalize()
    path = drifted.store.personal_file
    outer = json.loads(path.read_bytes())
    body = json.loads(outer["payload"])
    body["personal_accuracy"] = 1.0  # claim a better head
    outer["payload"] = json.dumps(body, sort_keys=True, separators=(",", ":"))
    path.write_text(json.dumps(outer))
    drifted.close()
    again = Agent(None, agent_dir, trust=trust)
    try:
        assert again.personal is None and not path.exists()
        assert "refused the stored personal head" in caplog.text and "HMAC" in caplog.text
        assert again.report().metrics["personal_refusals"] == 1
        x = pm.inputs(50, seed=5)
        assert np.array_equal(again.predict({"x": x})["probs"].argmax(axis=1), pm.fleet_labels(x))
    finally:
        again.close()


def test_another_devices_head_is_refused(drifted, tmp_path, trust):  # type: ignore[no-untyped-def]
    head = drifted.personalize()
    other = Agent(None, tmp_path / "other", trust=trust)
    try:
        data = drifted.store.personal_file.read_bytes()
        with pytest.raises(SecurityError, match="HMAC"):
            load_personal(data, other._personal_key, head.base_sha256)
        with pytest.raises(SecurityError, match="not a stored head"):
            load_personal(b"{}", other._personal_key, head.base_sha256)
    finally:
        other.close()


def test_a_new_base_version_drops_the_head(drifted, release_key, ref, assignment_for, caplog):  # type: ignore[no-untyped-def]
    drifted.personalize()
    b2 = _bundle(drifted, release_key, ref, 2, scale=1.5)
    assert drifted.install(b2, assignment_for(b2, 2))
    assert drifted.personal is None and not drifted.store.personal_file.exists()
    assert "the base version changed" in caplog.text
    assert drifted.report().metrics["personal_drops"] == 1
    x = pm.inputs(20, seed=6)
    assert np.array_equal(drifted.predict({"x": x})["probs"].argmax(axis=1), pm.fleet_labels(x))
    with pytest.raises(DataError, match="labelled samples"):  # the new base has no labels yet
        drifted.personalize()


def test_personalize_needs_labels_and_an_embedding_view(
    agent_dir, trust, make_bundle, assignment_for, x1
):  # type: ignore[no-untyped-def]
    agent = Agent(None, agent_dir, trust=trust)
    try:
        with pytest.raises(AgentError, match="no model installed"):
            agent.personalize()
        b = make_bundle(agent.encryption_key.public_key(), 2)  # no monitoring reference
        agent.install(b, assignment_for(b, 2))
        agent.predict({"x": x1})
        with pytest.raises(AgentError, match="embedding"):
            agent.personalize()
    finally:
        agent.close()


def test_fit_personal_validates_its_input() -> None:
    x = pm.embed(pm.inputs(40))
    y = pm.personal_labels(pm.inputs(40))
    kw = {"n_classes": 3, "base_sha256": "0" * 64, "embedding": "e", "output": "probs",
          "probabilities": True}
    with pytest.raises(DataError, match="at least 20"):
        fit_personal(x[:10], y[:10], y[:10], **kw)  # type: ignore[arg-type]
    with pytest.raises(DataError, match="line up"):
        fit_personal(x, y[:30], y, **kw)  # type: ignore[arg-type]
    with pytest.raises(DataError, match="outside"):
        fit_personal(x, y + 3, y, **kw)  # type: ignore[arg-type]
    bad = x.copy()
    bad[0, 0] = np.nan
    with pytest.raises(DataError, match="finite"):
        fit_personal(bad, y, y, **kw)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="held_out"):
        PersonalConfig(held_out=0.9)


def test_personalize_every_refits_once_enough_new_labels_arrived(
    agent_dir, trust, release_key, assignment_for, ref
):  # type: ignore[no-untyped-def]
    agent = Agent(None, agent_dir, trust=trust, personalize_every=100)
    try:
        b = _bundle(agent, release_key, ref, 1)
        agent.install(b, assignment_for(b, 1))
        x = pm.inputs(200, seed=7)
        _label(agent, x[:60], pm.personal_labels(x[:60]))
        assert agent.maybe_personalize() is None and agent.personal is None  # 60 < 100
        _label(agent, x[60:], pm.personal_labels(x[60:]))
        head = agent.maybe_personalize()
        assert head is not None and head.serving and agent.personal is head
        assert agent.maybe_personalize() is None  # no new labels since
    finally:
        agent.close()
    with pytest.raises(InputError, match="personalize_every"):
        Agent(None, agent_dir, trust=trust, personalize_every=0)
