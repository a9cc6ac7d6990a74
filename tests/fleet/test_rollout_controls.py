"""Rollout controls over HTTP: stored with the rollout, applied at real check-ins, and refused
with a 400 naming the value; ``edgeloop rollout start`` refuses bad ones before any request."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from edgeloop.cli.rollout import app
from edgeloop.errors import InputError
from edgeloop.protocol import ed25519_from_hex, verify_assignment

FP32: dict[str, dict[str, Any]] = {"fp32": {}}


def _version(device: Any, r: Any) -> int:
    assert r.status_code == 200, r.text
    key = ed25519_from_hex(device.enrollment["director_key"]["keyval"]["public"])
    now = datetime.now(timezone.utc)
    return verify_assignment(
        r.json()["assignment"], key, device_id=device.device_id, now=now
    ).version


def test_controls_are_stored_and_limit_real_check_ins(sqlite_fleet: Any) -> None:
    fleet = sqlite_fleet
    fleet.release("kws", 1, FP32)
    devices = [fleet.device("arm", model="kws") for _ in range(4)]
    fleet.push("kws", 2, FP32)
    r = fleet.client.post(
        "/v1/admin/releases", json={"model": "kws", "version": 2}, headers=fleet.admin
    )
    assert r.status_code == 201, r.text
    r = fleet.client.post(
        "/v1/admin/rollouts",
        json={
            "model": "kws",
            "version": 2,
            "stages": [100],
            "max_per_minute": 1,
            "window": "00:00-24:00",
            "max_failures": 2,
        },
        headers=fleet.admin,
    )
    assert r.status_code == 201, r.text
    rollout = r.json()
    assert rollout["controls"]["max_per_minute"] == 1
    assert rollout["controls"]["window"] == "00:00-24:00"
    assert rollout["devices"] == {"downloading": 0, "installed": 0, "failed": 0}
    installed = {"model": "kws", "version": 1, "variant": "fp32", "sha256": "0" * 64}
    versions = [_version(d, d.checkin(installed)) for d in devices]
    assert sorted(versions) == [1, 1, 1, 2]  # one device per minute
    got = fleet.client.get(f"/v1/admin/rollouts/{rollout['id']}", headers=fleet.admin).json()
    assert got["devices"]["downloading"] == 1
    assert any(e["kind"] == "start" for e in got["events"])


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_per_minute", 0),
        ("max_per_minute", "lots"),
        ("max_concurrent_downloads", 1.5),
        ("window", "2am-5am"),
        ("window_offset", "+99:00"),
        ("max_failure_rate", 2),
        ("download_timeout_s", -1),
    ],
)
def test_bad_controls_are_a_400_naming_the_value(sqlite_fleet: Any, field: str, value: Any) -> None:
    fleet = sqlite_fleet
    r = fleet.client.post(
        "/v1/admin/rollouts",
        json={"model": "kws", "version": 2, field: value},
        headers=fleet.admin,
    )
    assert r.status_code == 400, r.text
    detail = r.json()["detail"]
    assert field in detail and "expected" in detail and "\n" not in detail


def test_the_cli_refuses_bad_controls_before_any_request(tmp_path: Path) -> None:
    token = tmp_path / "admin-token"
    token.write_text("t" * 43 + "\n")
    base = ["--server", "http://127.0.0.1:9", "--admin-token-file", str(token), "start", "kws@2"]
    for args, named in [
        (["--window", "25:00-03:00"], "window '25:00-03:00'"),
        (["--max-per-minute", "0"], "max_per_minute 0"),
        (["--max-failure-rate", "1.5"], "max_failure_rate 1.5"),
        (["--window", "02:00-05:00", "--window-offset", "CET"], "window_offset 'CET'"),
    ]:
        err = CliRunner().invoke(app, base + args).exception
        assert isinstance(err, InputError) and named in str(err), (args, err)


def test_a_refusal_reported_at_check_in_fails_the_rollout(sqlite_fleet: Any) -> None:
    """Through real signed check-ins (the group-commit path falls back to one transaction
    when the policy records a device): assigned, refused by the agent, counted, rolled back."""
    from edgeloop.db import make_engine, write_session
    from edgeloop.fleet import _rollout_store as rs

    fleet = sqlite_fleet
    fleet.release("kws", 1, FP32)
    devices = [fleet.device("arm", model="kws") for _ in range(2)]
    fleet.push("kws", 2, FP32)
    r = fleet.client.post(
        "/v1/admin/releases", json={"model": "kws", "version": 2}, headers=fleet.admin
    )
    assert r.status_code == 201, r.text
    r = fleet.client.post(
        "/v1/admin/rollouts",
        json={"model": "kws", "version": 2, "stages": [100], "max_failures": 0},
        headers=fleet.admin,
    )
    assert r.status_code == 201, r.text
    rid = r.json()["id"]
    v1 = {"model": "kws", "version": 1, "variant": "fp32", "sha256": "0" * 64}
    assert [_version(d, d.checkin(v1)) for d in devices] == [2, 2]
    refused = devices[0].checkin(
        v1, health="degraded", last_error="kws@2 refused: self-test output differs"
    )
    assert _version(devices[0], refused) == 1  # a failed device is not sent it again
    got = fleet.client.get(f"/v1/admin/rollouts/{rid}", headers=fleet.admin).json()
    assert got["devices"] == {"downloading": 1, "installed": 0, "failed": 1}
    engine = make_engine(fleet.settings.db_url)
    try:
        with write_session(engine) as s:
            rs.drive(s, datetime.now(timezone.utc))
    finally:
        engine.dispose()
    got = fleet.client.get(f"/v1/admin/rollouts/{rid}", headers=fleet.admin).json()
    assert got["state"] == "failed" and "(install failures)" in got["reason"]
    assert _version(devices[1], devices[1].checkin(v1)) == 1  # the stage goes back
