"""The Uptane split: the release side's signed targets decide which versions may run at all;
the director (its online key on the server) only chooses among them.

Attack 6: an assignment with ``rollback: true`` signed by the director key alone cannot put a
device on a version the release side revoked (nor one it never released). Attack 7: one
flipped bit in the ``/v1/keys`` answer is a transport fault, retried at the next poll, never a
failed release.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta, timezone

import pytest

from edgeloop.agent import Agent
from edgeloop.bundle import load_signing_key
from edgeloop.hardware import load_target
from edgeloop.protocol import Assignment, iso_time, sign_assignment
from edgeloop.update import Repository
from security._proxy import json_tamper


def _agent(server, state, url: str | None = None, **kw) -> Agent:
    image = server.provision()
    if url is not None:
        import dataclasses

        image = dataclasses.replace(image, server_url=url)
    return Agent(
        None,
        state,
        profile=load_target("rpi4"),
        poll_interval_s=1.0,
        confirm_after_s=0.0,
        provisioning=image,
        **kw,
    )


def _on_v2_with_v1_in_the_other_slot(server, tmp_path, **kw) -> Agent:
    server.publish("kws", 1, scale=1.0)
    agent = _agent(server, tmp_path / "dev", **kw)
    agent.poll_sync()
    server.publish("kws", 2, scale=2.0)
    agent.poll_sync()
    agent.poll_sync()
    assert agent.model.version == 2 and agent.state.slot("a").version == 1
    return agent


@pytest.mark.slow
def test_director_rollback_to_a_revoked_version_is_refused(fleet_server, tmp_path):
    """Attack 6: the director (server key) signs ``rollback: true`` to a revoked version."""
    agent = _on_v2_with_v1_in_the_other_slot(fleet_server, tmp_path)
    Repository(fleet_server.data / "tuf", fleet_server.data / "keys").revoke("kws", 1)

    fleet_server.desire("kws", 1)  # the director now signs a rollback to kws@1
    agent.poll_sync()

    assert agent.model.version == 2  # still on the listed version
    assert agent.telemetry.totals.get("switches", 0) == 0
    assert "kws@1 is not in the signed targets (revoked)" in (agent.last_error or "")
    agent.poll_sync()  # asked again: the refusal is remembered, nothing changes
    assert agent.model.version == 2 and agent.state.active == "b"


@pytest.mark.slow
def test_director_rollback_to_a_listed_version_is_followed(fleet_server, tmp_path):
    """The other half of the split: among listed versions, the director decides."""
    agent = _on_v2_with_v1_in_the_other_slot(fleet_server, tmp_path)

    fleet_server.desire("kws", 1)
    agent.poll_sync()

    assert agent.model.version == 1 and agent.telemetry.totals.get("switches") == 1


@pytest.mark.slow
def test_director_key_alone_cannot_install_an_unreleased_bundle(fleet_server, mitm, tmp_path):
    """A server that signs assignments (the director key) but not targets metadata: an
    assignment naming a target the release side never signed is not installed."""
    fleet_server.publish("kws", 1, scale=1.0)
    director = load_signing_key(fleet_server.data / "director.pem")
    proxy = mitm(fleet_server.url)
    agent = _agent(fleet_server, tmp_path / "dev", url=proxy.url)
    agent.poll_sync()
    assert agent.model.version == 1
    now = datetime.now(timezone.utc)
    forged = Assignment(
        device_id=str(agent.device_id),
        model="kws",
        version=0,
        variant="fp32",
        target="kws/0/kws-0-fp32.elb",
        sha256="ab" * 32,
        length=1234,
        issued_at=iso_time(now),
        expires_at=iso_time(now + timedelta(hours=1)),
        rollback=True,
    )
    proxy.tamper(
        "/v1/checkin", json_tamper(lambda d: {**d, "assignment": sign_assignment(forged, director)})
    )

    agent.poll_sync()

    assert agent.model.version == 1
    assert "not in the signed TUF targets" in (agent.poll_error or "")


def _flip_wrapped_key(answer: dict) -> dict:
    recipient = dict(answer["recipient"])
    raw = bytearray(base64.b64decode(recipient["wrapped_key"]))
    raw[5] ^= 0x01
    recipient["wrapped_key"] = base64.b64encode(bytes(raw)).decode()
    return {**answer, "recipient": recipient}


@pytest.mark.slow
def test_flipped_bit_in_the_data_key_answer_is_retried_not_a_failed_release(
    fleet_server, mitm, tmp_path
):
    """Attack 7: the release is not blocked; the next poll installs it."""
    fleet_server.publish("kws", 1, scale=1.0)
    proxy = mitm(fleet_server.url)
    agent = _agent(fleet_server, tmp_path / "dev", url=proxy.url)
    agent.poll_sync()
    fleet_server.publish("kws", 2, scale=2.0)
    proxy.tamper("/v1/keys", json_tamper(_flip_wrapped_key), times=1)

    agent.poll_sync()  # the tampered key does not open the bundle
    failed_once = (agent.model.version, dict(agent.state.failed), agent.last_error)
    agent.poll_sync()  # the next answer is intact

    assert failed_once[0] == 1 and failed_once[1] == {}  # nothing recorded against kws@2
    assert "does not open the verified bundle" in (failed_once[2] or "")
    assert agent.model.version == 2 and agent.state.failed == {}
    assert agent.telemetry.totals.get("install_failures") == 1
    assert json.loads((agent.store.root / "state.json").read_text())["failed"] == {}
