"""On-device personalization: a personal head fitted on the device's delayed labels (the fleet
head corrected toward them, its L2-SP strength cross-validated), served only when it beats the
fleet head out of fold, stored under a device-held HMAC key, bound to
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


def _probs(x: np.ndarray) -> np.ndarray:
    z = pm.embed(x) @ pm.W2 + pm.B2
    p = np.exp(z - z.max(axis=1, keepdims=True))
    return p / p.sum(axis=1, keepdims=True)  # type: ignore[no-any-return]


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
    assert head.n_train == head.n_held_out == 240 and head.anchored
    assert head.strength == min(PersonalConfig().strengths)  # far from the fleet head: weak pull
    assert "serving the personal head" in head.why and drifted.personal_status == head.why
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
                              head.scores(pm.embed(x), _probs(x)).argmax(axis=1))
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
        assert head.strength == max(PersonalConfig().strengths)  # the labels agree: strong pull
        assert "keeping the fleet head" in head.why and "gain +0.000" in head.why
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
    with pytest.raises(DataError, match="fleet model's class output"):
        fit_personal(x, y, y, **kw)  # type: ignore[arg-type]
    with pytest.raises(DataError, match="fleet output"):
        fit_personal(x, y, y, fleet=_probs(pm.inputs(40))[:, :2], **kw)  # type: ignore[arg-type]
    for bad_config in ({"strengths": ()}, {"strengths": (0.0,)}, {"strengths": (float("nan"),)},
                       {"folds": 1}, {"epochs": 0}, {"min_samples": 6, "folds": 5}):
        with pytest.raises(InputError, match="personalize"):
            PersonalConfig(**bad_config)  # type: ignore[arg-type]


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


KW = {"n_classes": 3, "base_sha256": "0" * 64, "embedding": "e", "output": "probs",
      "probabilities": True}


def test_an_anchored_head_beats_one_from_scratch_on_few_labels() -> None:
    """A device whose users pick the third class more often (a prior shift the fleet head does
    not know): from 30 labels the head started from the fleet head and pulled toward it is
    more accurate on new samples than one fitted from scratch, and both beat the fleet."""
    shift = np.array([0.0, 0.0, 2.5])
    xt = pm.inputs(2000, seed=100)
    pt = _probs(xt)
    truth = (np.log(pt) + shift).argmax(axis=1)
    acc: dict[bool, list[float]] = {True: [], False: []}
    for seed in range(3):
        x = pm.inputs(30, seed=seed)
        p = _probs(x)
        y = (np.log(p) + shift).argmax(axis=1)
        for anchored in (True, False):
            head = fit_personal(pm.embed(x), y, p.argmax(axis=1), fleet=p,
                                config=PersonalConfig(anchored=anchored), **KW)  # type: ignore[arg-type]
            assert head.anchored is anchored and head.gain > 0, head.why
            acc[anchored].append(float(np.mean(
                head.scores(pm.embed(xt), pt).argmax(axis=1) == truth)))
    fleet = float(np.mean(pt.argmax(axis=1) == truth))
    assert np.mean(acc[True]) > np.mean(acc[False]) > fleet, (acc, fleet)


def test_labels_that_agree_with_the_fleet_keep_the_fleet_head() -> None:
    """A head fitted on labels the fleet head already gets right does not serve; anchored it
    stays (nearly) the fleet head and loses less out of fold than one from scratch."""
    x = pm.inputs(40, seed=8)
    p = _probs(x)
    y = p.argmax(axis=1)
    anchored = fit_personal(pm.embed(x), y, y, fleet=p, **KW)  # type: ignore[arg-type]
    scratch = fit_personal(pm.embed(x), y, y, fleet=p, config=PersonalConfig(anchored=False),
                           **KW)  # type: ignore[arg-type]
    assert not anchored.serving and not scratch.serving
    assert anchored.strength == max(PersonalConfig().strengths)
    assert scratch.gain < anchored.gain <= 0, (scratch.why, anchored.why)
    xt = pm.inputs(500, seed=9)  # and the kept head is still (nearly) the fleet head
    assert np.mean(anchored.scores(pm.embed(xt), _probs(xt)).argmax(axis=1)
                   == pm.fleet_labels(xt)) > 0.97


def test_an_anchored_head_applies_to_logits_and_needs_the_fleet_output() -> None:
    x = pm.inputs(60, seed=10)
    p = _probs(x)
    y = pm.personal_labels(x)
    head = fit_personal(pm.embed(x), y, p.argmax(axis=1), fleet=np.log(p),
                        **{**KW, "probabilities": False})  # type: ignore[arg-type]
    out = head.apply({"e": pm.embed(x), "probs": np.log(p).astype(np.float32)})
    assert np.allclose(out["probs"], np.log(p) + pm.embed(x) @ head.weight + head.bias,
                       atol=1e-4)
    with pytest.raises(DataError, match="fleet class output"):
        head.scores(pm.embed(x))


def test_refits_are_anchored_on_the_fleet_model_not_the_served_head(drifted):  # type: ignore[no-untyped-def]
    first = drifted.personalize()
    assert first.serving
    x = pm.inputs(40, seed=11)
    _label(drifted, x, pm.personal_labels(x))  # served by the personal head
    view = drifted.monitoring.personal_view()
    assert view["fleet"] is not None and len(view["fleet"]) == 280
    assert np.allclose(view["fleet"][-40:], _probs(x), atol=1e-5)  # the fleet model's output
    served = view["predicted"][-40:]
    assert np.array_equal(served, first.scores(pm.embed(x), _probs(x)).argmax(axis=1))
    second = drifted.personalize()
    assert second.fleet_accuracy == pytest.approx(
        float(np.mean(view["fleet"].argmax(axis=1) == view["y"])))


def test_a_head_stored_by_the_previous_format_still_loads(drifted):  # type: ignore[no-untyped-def]
    head = drifted.personalize()
    key = drifted._personal_key
    outer = json.loads(head.to_bytes(key))
    body = json.loads(outer["payload"])
    body["format"] = "edgeloop-personal-head/1"
    del body["anchored"], body["strength"]
    payload = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    import hashlib
    import hmac

    data = json.dumps({"payload": payload.decode(),
                       "hmac_sha256": hmac.new(key, payload, hashlib.sha256).hexdigest()})
    old = load_personal(data.encode(), key, head.base_sha256)
    assert not old.anchored and old.strength == 0.0
    x = pm.embed(pm.inputs(5))
    assert np.array_equal(old.scores(x), x @ head.weight + head.bias)


def test_a_gain_within_noise_does_not_serve() -> None:
    """A positive out-of-fold gain of a label or two is not enough: the paired sign test's
    evidence (fixed - broken) / sqrt(fixed + broken) must reach ``min_evidence``."""
    shift = np.array([0.0, 0.0, 2.5])
    x = pm.inputs(30, seed=0)
    p = _probs(x)
    y = (np.log(p) + shift).argmax(axis=1)
    cfg = PersonalConfig(anchored=False)
    head = fit_personal(pm.embed(x), y, p.argmax(axis=1), fleet=p, config=cfg, **KW)  # type: ignore[arg-type]
    assert head.gain > 0 and 0 < head.evidence < 1 and not head.serving
    assert "keeping the fleet head" in head.why and "evidence" in head.why
    lax = fit_personal(pm.embed(x), y, p.argmax(axis=1), fleet=p,
                       config=PersonalConfig(anchored=False, min_evidence=0.0), **KW)  # type: ignore[arg-type]
    assert lax.serving and lax.evidence == head.evidence
