"""A real server: ``edgeloop server`` under uvicorn on 127.0.0.1, talked to over HTTP."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from _live import ChildServer, fleet_ready
from edgeloop.bundle import Trust, decrypt, verify
from edgeloop.cli.fleet import app as fleet_cli
from edgeloop.protocol import (
    ENROLL_DEVICE_ID,
    ed25519_from_hex,
    public_hex,
    sign_request,
    verify_assignment,
)
from edgeloop.update import UpdateClient

pytestmark = pytest.mark.slow


class LiveServer:
    """``python -m edgeloop.cli.server`` in a child process; its port is found race-free
    (tests/_live.py) and kept across a restart."""

    def __init__(self, db: str, data: Path, log: Path) -> None:
        self.db, self.data, self.log = db, data, log

        def argv(port: int) -> list[str]:
            return [
                sys.executable, "-m", "edgeloop.cli.server",
                "--db", db, "--data", str(data),
                "--host", "127.0.0.1", "--port", str(port), "--poll-interval", "5",
                "--create-release-keys",
            ]  # fmt: skip

        self.child = ChildServer(argv, log, fleet_ready(data / "admin-token"))

    @property
    def url(self) -> str:
        return self.child.url

    def start(self) -> None:
        self.child.start()

    def stop(self) -> None:
        self.child.stop()

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": "Bearer " + (self.data / "admin-token").read_text().strip()}


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[LiveServer]:
    server = LiveServer(f"sqlite:///{tmp_path / 'fleet.db'}", tmp_path / "data", tmp_path / "log")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def live_server_on(tmp_path: Path, db_url: str) -> Iterator[LiveServer]:
    """The real server on each engine (SQLite, PostgreSQL)."""
    server = LiveServer(db_url, tmp_path / "data", tmp_path / "log")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _admin_cli(server: LiveServer) -> Callable[..., Any]:
    runner = CliRunner()

    def run(*args: str) -> Any:
        result = runner.invoke(
            fleet_cli, ["--server", server.url, "--data", str(server.data), *args]
        )
        assert result.exit_code == 0, (result.output, result.exception)
        return result.output

    return run


def _enroll(server: LiveServer, token: str, profile: dict[str, Any]) -> dict[str, Any]:
    from edgeloop.bundle import generate_encryption_key, generate_signing_key

    key, enc = generate_signing_key(), generate_encryption_key()
    body = json.dumps(
        {
            "token": token,
            "signing_key": public_hex(key),
            "encryption_key": public_hex(enc),
            "profile": profile,
            "agent_version": "0.1.0",
        }
    ).encode()
    headers = sign_request(key, ENROLL_DEVICE_ID, "POST", "/v1/enroll", body)
    r = httpx.post(server.url + "/v1/enroll", content=body, headers=headers)
    assert r.status_code == 201, r.text
    return {"key": key, "enc": enc, **r.json()}


def _post(server: LiveServer, dev: dict[str, Any], path: str, payload: dict[str, Any]) -> Any:
    body = json.dumps(payload).encode()
    headers = sign_request(dev["key"], dev["device_id"], "POST", path, body)
    return httpx.post(server.url + path, content=body, headers=headers)


def test_a_device_goes_from_enrollment_to_a_decrypted_model_over_http(
    live_server: LiveServer, fleet_on: Any, tmp_path: Path
) -> None:
    admin = _admin_cli(live_server)
    token = admin("token", "--model", "kws").strip()
    profile = {"name": "x", "source": "measured", "arch": "x86_64", "cpu_model": "c", "isa": []}
    dev = _enroll(live_server, token, profile)
    # push a version to the registry the server reads, then publish it with the admin CLI
    from edgeloop.fleet import FleetSettings

    settings = FleetSettings(
        db_url=live_server.db, data_dir=live_server.data, create_release_keys=True
    )
    fleet_on(settings, None).push("kws", 1, {"fp32": {}, "int8": {"isa": ["avx512_vnni"]}})
    out = admin("publish", "kws@1", "--desired")
    assert "published kws@1: fp32, int8" in out and "kws@production -> 1" in out

    r = _post(live_server, dev, "/v1/checkin", {"agent_version": "0.1.0", "health": "ok"})
    assert r.status_code == 200, r.text
    director = ed25519_from_hex(dev["director_key"]["keyval"]["public"])
    now = datetime.now(timezone.utc)
    a = verify_assignment(r.json()["assignment"], director, device_id=dev["device_id"], now=now)
    assert (a.version, a.variant) == (1, "fp32")

    # fetch through TUF with the root pinned at enrollment; unwrap the per-device data key
    root = json.dumps(dev["tuf_root"]).encode()
    client = UpdateClient(live_server.url + "/tuf", root, tmp_path / "tuf-cache")
    info = client.target_info(a.target)
    assert info is not None and (info.sha256, info.length) == (a.sha256, a.length)
    path = client.fetch_bundle(a.target, tmp_path / "slot")
    key = _post(live_server, dev, "/v1/keys", {"target": a.target}).json()["recipient"]
    bundle = path.read_bytes()
    manifest = verify(bundle, client.trust())
    assert isinstance(client.trust(), Trust)
    assert decrypt(bundle, manifest, dev["enc"], key)[:1] == b"\x08"

    listed = admin("devices", "--json")
    assert json.loads(listed)[0]["device_id"] == dev["device_id"]
    assert "revoked" in admin("revoke", dev["device_id"])
    r = _post(live_server, dev, "/v1/checkin", {"agent_version": "0.1.0"})
    assert r.status_code == 403


def test_a_restart_of_the_real_server_loses_nothing(live_server_on: LiveServer) -> None:
    live_server = live_server_on
    token = httpx.post(live_server.url + "/v1/admin/tokens", json={}, headers=live_server.admin)
    profile = {"name": "x", "source": "measured", "arch": "x86_64", "cpu_model": "c"}
    dev = _enroll(live_server, token.json()["token"], profile)
    spare = httpx.post(live_server.url + "/v1/admin/tokens", json={}, headers=live_server.admin)
    live_server.stop()
    live_server.start()
    assert _post(live_server, dev, "/v1/checkin", {"agent_version": "0.1.0"}).status_code == 200
    second = _enroll(live_server, spare.json()["token"], profile)
    assert second["director_key"] == dev["director_key"]
    devices = httpx.get(live_server.url + "/v1/admin/devices", headers=live_server.admin).json()
    assert {d["device_id"] for d in devices["devices"]} == {dev["device_id"], second["device_id"]}
    metrics = httpx.get(live_server.url + "/metrics").text
    assert 'edgeloop_fleet_devices{state="enrolled"} 2.0' in metrics
