"""The agent and simulator commands as a user runs them, against the real server."""

from __future__ import annotations

import json

import pytest


@pytest.mark.slow
def test_edgeloop_agent_once_installs_and_reports(cli, fleet_server, tmp_path):
    fleet_server.publish("kws", 1, scale=2.0)
    state = tmp_path / "agent-state"
    token = (fleet_server.data / "admin-token").read_text().strip()
    env = {"EDGELOOP_ADMIN_TOKEN": token}
    made = cli("fleet", "--server", fleet_server.url, "provision", "--out", "dev.json", env=env)
    assert made.returncode == 0, made.stderr
    assert (tmp_path / "dev.json").stat().st_mode & 0o777 == 0o600
    r = cli(
        "agent", "--provision", "dev.json", "--state", str(state), "--profile", "rpi4", "--once"
    )
    assert r.returncode == 0, r.stderr
    status = json.loads(r.stdout)
    assert (status["model"], status["version"], status["health"]) == ("kws", 1, "ok"), r.stdout
    assert (state / "slots" / "a" / "bundle.elb").exists()
    # a second run needs no token nor file: the device is enrolled and its trust is pinned
    again = cli("agent", "--state", str(state), "--once")
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
        "--light",
        env={"EDGELOOP_ADMIN_TOKEN": token},
    )
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["enrolled"] == 3 and out["serving"] == {"kws@1": 3}
    assert out["requests"]["/v1/checkin"]["errors"] == 0
    assert out["bundle_bytes_on_disk"] > 0  # light mode (one copy per bundle: test_fleet_agents)


@pytest.mark.slow
def test_edgeloop_agent_trusts_on_first_use_only_when_told(cli, fleet_server, tmp_path):
    fleet_server.publish("kws", 1, scale=2.0)
    base = ["agent", "--server", fleet_server.url, "--profile", "rpi4", "--once"]

    refused = cli(*base, "--state", "a", "--enroll-token", fleet_server.token())
    tofu = cli(
        *base, "--state", "b", "--enroll-token", fleet_server.token(), "--insecure-first-use"
    )

    assert refused.returncode == 1
    assert "no provisioned trust" in json.loads(refused.stdout)["poll_error"]
    assert not (tmp_path / "a" / "identity.json").exists()  # nothing stored
    assert tofu.returncode == 0, tofu.stderr
    assert "warning" in tofu.stderr and "--insecure-first-use" in tofu.stderr
    assert json.loads(tofu.stdout)["version"] == 1
