"""The agent and simulator commands as a user runs them, against the real server."""

from __future__ import annotations

import json

import pytest


@pytest.mark.slow
def test_edgeloop_agent_once_installs_and_reports(cli, fleet_server, tmp_path):
    fleet_server.publish("kws", 1, scale=2.0)
    state = tmp_path / "agent-state"
    r = cli(
        "agent",
        "--server",
        fleet_server.url,
        "--state",
        str(state),
        "--enroll-token",
        fleet_server.token(),
        "--profile",
        "rpi4",
        "--once",
    )
    assert r.returncode == 0, r.stderr
    status = json.loads(r.stdout)
    assert (status["model"], status["version"], status["health"]) == ("kws", 1, "ok"), r.stdout
    assert (state / "slots" / "a" / "bundle.elb").exists()
    # a second run needs no token: the device is enrolled
    again = cli("agent", "--server", fleet_server.url, "--state", str(state), "--once")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["device_id"] == status["device_id"]


@pytest.mark.slow
def test_edgeloop_fleet_simulate(cli, fleet_server):
    fleet_server.publish("kws", 1, scale=1.0)
    token = (fleet_server.data / "admin-token").read_text().strip()
    r = cli(
        "fleet",
        "simulate",
        "--devices",
        "3",
        "--server",
        fleet_server.url,
        "--duration",
        "5",
        "--poll-interval",
        "1",
        "--json",
        env={"EDGELOOP_ADMIN_TOKEN": token},
    )
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["enrolled"] == 3 and out["serving"] == {"kws@1": 3}
    assert out["requests"]["/v1/checkin"]["errors"] == 0
