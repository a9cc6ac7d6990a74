"""Revocation: after ``edgeloop release --revoke NAME@VERSION`` no device runs that version.

A device on a revoked version moves to its other slot if that version is still listed, else to
the newest listed version it can fetch; holding none, it stops serving with a clear local error
and reports it. The server's director is not asked: the agent reads the release side's signed
targets metadata itself (``revocation_check_s=0``: at every poll).
"""

from __future__ import annotations

import numpy as np
import pytest

from edgeloop.agent import Agent
from edgeloop.errors import AgentError
from edgeloop.hardware import load_target
from edgeloop.update import Repository

X = np.ones((1, 4), dtype=np.float32)


def _agent(server, state) -> Agent:
    return Agent(
        None,
        state,
        profile=load_target("rpi4"),
        poll_interval_s=1.0,
        confirm_after_s=0.0,
        provisioning=server.provision(),
        revocation_check_s=0.0,
    )


def _revoke(server, model: str, version: int) -> list[str]:
    return Repository(server.data / "tuf", server.data / "keys").revoke(model, version)


@pytest.mark.slow
def test_revoke_cli_moves_a_device_to_its_other_slot(fleet_server, tmp_path, cli):
    fleet_server.publish("kws", 1, scale=1.0)
    agent = _agent(fleet_server, tmp_path / "dev")
    agent.poll_sync()
    fleet_server.publish("kws", 2, scale=2.0)
    agent.poll_sync()
    agent.poll_sync()  # v2 confirmed; v1 waits in the other slot
    assert agent.model.version == 2 and not agent.state.trial

    out = cli(
        "release",
        "--revoke",
        "kws@2",
        "--repo",
        str(fleet_server.data / "tuf"),
        "--keys",
        str(fleet_server.data / "keys"),
    )
    agent.poll_sync()

    assert out.returncode == 0, out.stderr
    assert "revoked kws@2" in out.stdout
    assert agent.model is not None and agent.model.version == 1
    assert float(agent.predict({"x": X})["y"][0, 0]) == 1.0
    assert "kws@2 was revoked" in (agent.last_error or "")
    assert agent.telemetry.totals.get("revocations") == 1
    # the director still wants version 2; the device does not go back to it
    agent.poll_sync()
    assert agent.model.version == 1
    assert fleet_server.device(str(agent.device_id))["installed"]["version"] == 1


@pytest.mark.slow
def test_revoked_version_with_nothing_in_the_other_slot_fetches_the_newest_listed(
    fleet_server, tmp_path
):
    fleet_server.publish("kws", 1, scale=1.0)
    fleet_server.publish("kws", 2, scale=2.0, desired=False)  # listed, never assigned
    agent = _agent(fleet_server, tmp_path / "dev")
    agent.poll_sync()
    assert agent.model.version == 1 and agent.state.slot("b") is None

    _revoke(fleet_server, "kws", 1)
    agent.poll_sync()

    assert agent.model is not None and agent.model.version == 2
    assert "installed kws/2/" in (agent.last_error or "")


@pytest.mark.slow
def test_revoked_with_nothing_listed_stops_serving_and_reports(fleet_server, tmp_path):
    fleet_server.publish("kws", 1, scale=1.0)
    agent = _agent(fleet_server, tmp_path / "dev")
    agent.poll_sync()
    assert agent.model.version == 1

    assert _revoke(fleet_server, "kws", 1) == ["kws/1/kws-1-fp32.elb"]
    agent.poll_sync()

    assert agent.model is None and agent.health() == "failing"
    with pytest.raises(AgentError, match="no model installed"):
        agent.predict({"x": X})
    assert "not serving" in (agent.last_error or "")
    seen = fleet_server.device(str(agent.device_id))
    assert seen["health"] == "failing" and "kws@1 was revoked" in (seen["last_error"] or "")
    agent.close()
    restarted = Agent(None, agent.store.root)  # a reboot does not bring the revoked model back
    assert restarted.model is None and "revoked" in (restarted.last_error or "")


def test_revoking_an_unknown_release_is_a_clean_error(fleet_server, cli):
    out = cli(
        "release",
        "--revoke",
        "kws@9",
        "--repo",
        str(fleet_server.data / "tuf"),
        "--keys",
        str(fleet_server.data / "keys"),
    )

    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert "kws@9 is not in the signed targets" in out.stderr + out.stdout
