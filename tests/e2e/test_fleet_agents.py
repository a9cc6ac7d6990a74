"""The real fleet server and real agents on loopback: enroll, TUF download, install, serve.

Over TLS: the server runs with the session's test CA and every agent is provisioned with it
(``FleetServer.provision``), as a device image would be.
"""

from __future__ import annotations

import asyncio

import httpx
import numpy as np
import pytest

from edgeloop.agent import Agent, Simulator, simulated_profiles
from edgeloop.hardware import load_target

X = np.ones((1, 4), dtype=np.float32)


def _poll(agent: Agent) -> float:
    return agent.poll_sync()


@pytest.fixture
def fleet_server(tls_fleet_server):
    """Every test here runs against the server over TLS."""
    return tls_fleet_server


def _agent(fleet_server, tmp_path, name: str, target: str = "rpi4") -> Agent:
    return Agent(
        None,
        tmp_path / name,
        profile=load_target(target),
        poll_interval_s=1.0,
        confirm_after_s=0.0,
        provisioning=fleet_server.provision(),
    )


@pytest.mark.slow
def test_an_agent_holding_its_assignment_is_answered_unchanged(fleet_server, tmp_path, monkeypatch):
    """The agent sends the hash of the signed assignment it holds; the server answers
    ``unchanged`` (no envelope) and the agent keeps acting on the one it verified."""
    from edgeloop.agent._client import FleetClient

    seen = []
    checkin = FleetClient.checkin

    async def recording(self, device_id, body):
        response = await checkin(self, device_id, body)
        seen.append((body.assignment_sha256, response.unchanged, response.assignment is None))
        return response

    monkeypatch.setattr(FleetClient, "checkin", recording)
    fleet_server.publish("kws", 1, scale=1.0)
    a = _agent(fleet_server, tmp_path, "dev0")
    _poll(a)  # enrolls, gets the signed assignment, installs, tells the server at once
    assert a.model is not None and a.model.version == 1
    held = a.held_assignment()
    assert held is not None
    assert seen[0] == (None, False, False)
    assert seen[-1] == (held[0], True, True)
    _poll(a)
    assert seen[-1] == (held[0], True, True) and a.last_error is None
    assert a.model is not None and a.model.version == 1
    fleet_server.publish("kws", 2, scale=2.0)  # a new version: a new signed assignment
    _poll(a)
    assert a.model is not None and a.model.version == 2
    assert any(h == held[0] and not u and not empty for h, u, empty in seen)
    a.close()


@pytest.mark.slow
def test_publish_enroll_install_upgrade_rollback(fleet_server, tmp_path):
    fleet_server.publish("kws", 1, scale=1.0)
    agents = [_agent(fleet_server, tmp_path, f"dev{i}", t) for i, t in enumerate(["rpi4", "rpi5"])]
    for a in agents:
        _poll(a)
        assert a.last_error is None and a.poll_error is None
        assert a.model is not None and (a.model.name, a.model.version) == ("kws", 1)
        assert float(a.predict({"x": X})["y"][0, 0]) == 1.0
    # the server's inventory sees what each device runs
    info = fleet_server.device(str(agents[0].device_id))
    assert info["installed"]["version"] == 1 and info["health"] == "ok"

    fleet_server.publish("kws", 2, scale=2.0)
    a = agents[0]
    _poll(a)  # downloads through TUF, verifies, self-tests, switches (on trial)
    assert a.model is not None and a.model.version == 2 and a.state.trial
    assert float(a.predict({"x": X})["y"][0, 0]) == 2.0
    _poll(a)  # healthy through a poll: confirmed
    assert not a.state.trial and a.state.known_good == a.state.active
    assert fleet_server.device(str(a.device_id))["installed"]["version"] == 2

    installs = a.telemetry.totals.get("installs", 0)
    fleet_server.desire("kws", 1)  # an older version: the director signs a rollback
    _poll(a)
    assert a.model is not None and a.model.version == 1
    assert a.telemetry.totals.get("switches") == 1  # switched slots ...
    assert a.telemetry.totals.get("installs", 0) == installs  # ... without a download
    assert float(a.predict({"x": X})["y"][0, 0]) == 1.0
    for ag in agents:
        ag.close()


@pytest.mark.slow
def test_server_down_keeps_serving_then_recovers(fleet_server, tmp_path):
    fleet_server.publish("kws", 1, scale=3.0)
    a = _agent(fleet_server, tmp_path, "dev")
    _poll(a)
    assert a.model is not None and a.model.version == 1
    fleet_server.stop()
    delays = [_poll(a) for _ in range(3)]
    assert a.telemetry.totals["poll_failures"] == 3
    assert delays[0] <= 1.0 and a.backoff.failures == 3  # backing off, not hammering
    assert float(a.predict({"x": X})["y"][0, 0]) == 3.0  # still serving
    fleet_server.start()
    _poll(a)
    assert a.backoff.failures == 0 and a.poll_error is None
    # a restarted agent (new process) serves from its slots before any network
    a.close()
    again = Agent(None, a.store.root)  # its pinned provisioning is in the state dir
    assert again.server_url == fleet_server.url
    assert float(again.predict({"x": X})["y"][0, 0]) == 3.0


@pytest.mark.slow
def test_revoked_device_keeps_serving_and_is_refused(fleet_server, tmp_path):
    fleet_server.publish("kws", 1, scale=1.0)
    a = _agent(fleet_server, tmp_path, "dev")
    _poll(a)
    r = httpx.post(
        fleet_server.url + f"/v1/admin/devices/{a.device_id}/revoke",
        headers=fleet_server.admin,
        verify=fleet_server.verify,
    )
    assert r.status_code == 200
    _poll(a)
    assert "403" in (a.poll_error or "")
    assert a.model is not None and a.model.version == 1


@pytest.mark.slow
def test_simulator_runs_a_handful_of_agents(fleet_server, tmp_path):
    fleet_server.publish("kws", 1, scale=1.0)
    n = 5
    tokens = [fleet_server.token() for _ in range(n)]

    async def run():
        sim = Simulator(
            fleet_server.url,
            tmp_path / "sim",
            tokens,
            simulated_profiles("mix", n),
            poll_interval_s=1.0,
            rps=5.0,
            provisioning=fleet_server.provision(),
        )
        try:
            return await sim.run(6.0)
        finally:
            await sim.aclose()

    result = asyncio.run(run())
    assert result.enrolled == n
    assert result.serving == {"kws@1": n}
    assert result.loads == 1  # one model in memory for all devices
    assert result.requests["/v1/checkin"]["count"] >= n
    assert result.requests["/v1/checkin"]["errors"] == 0
    assert result.inferences > 0 and result.inference_errors == 0
    devices = httpx.get(
        fleet_server.url + "/v1/admin/devices",
        headers=fleet_server.admin,
        verify=fleet_server.verify,
    ).json()
    targets = {d["profile"]["name"] for d in devices["devices"]}
    assert len(targets) > 1  # a mix of hardware profiles


@pytest.mark.slow
def test_simulator_light_mode_keeps_the_protocol_and_one_copy_of_each_bundle(
    fleet_server, tmp_path
):
    """Light mode (docs/scale.md): 50 devices, each enrolled with its own keys, signing its
    requests, verifying its signed assignment and TUF metadata, reporting telemetry; on disk
    one copy of the bundle all their slots link to, in memory one inference session."""
    fleet_server.publish("kws", 1, scale=1.0)
    n = 50
    tokens = [fleet_server.token() for _ in range(n)]

    async def run():
        sim = Simulator(
            fleet_server.url,
            tmp_path / "sim",
            tokens,
            simulated_profiles("mix", n),
            poll_interval_s=2.0,
            rps=1.0,
            provisioning=fleet_server.provision(),
            light=True,
        )
        try:
            await sim.warm_up(concurrency=16)
            first = await sim.run(4.0)
            fleet_server.publish("kws", 2, scale=2.0)  # every device downloads and switches
            second = await sim.run(30.0, until=lambda: sim.serving().get("kws@2", 0) == n)
            keys = {bytes(a.signing_key.public_key().public_bytes_raw()) for a in sim.agents}
            return first, second, keys
        finally:
            await sim.aclose()

    first, second, keys = asyncio.run(run())
    assert first.enrolled == n and len(keys) == n  # n devices, n keys
    assert first.serving == {"kws@1": n}
    assert first.requests["/v1/checkin"]["errors"] == 0
    assert first.requests["/v1/telemetry"]["count"] >= n
    assert second.serving == {"kws@2": n}
    assert second.loads == 2  # one inference session per bundle, not per device
    # on disk: each bundle once (slots a and b of every device link to the two copies)
    blobs = sorted((tmp_path / "sim" / "blobs").iterdir())
    assert len(blobs) == 2
    assert second.bundle_bytes_on_disk == sum(p.stat().st_size for p in blobs)
    devices = httpx.get(
        fleet_server.url + "/v1/admin/devices",
        headers=fleet_server.admin,
        verify=fleet_server.verify,
    ).json()["devices"]
    assert len(devices) == n and all(d["installed"]["version"] == 2 for d in devices)
