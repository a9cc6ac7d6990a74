"""The fleet server in-process (TestClient over ASGI), on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from edgeloop.bundle import Trust, decrypt, verify
from edgeloop.fleet import FleetSettings, create_app
from edgeloop.protocol import (
    ENROLL_DEVICE_ID,
    InstalledModel,
    ed25519_from_hex,
    sign_request,
    verify_assignment,
)

NOW = datetime.now(timezone.utc)


def _state(fleet: Any) -> dict[str, Any]:
    """Everything a refused request must leave as it was."""
    engine = fleet.client.app.state.ctx.engine
    with engine.connect() as c:
        tables = ["fleet_devices", "fleet_nonces", "fleet_reports", "fleet_enroll_tokens"]
        return {t: sorted(map(str, c.execute(sa.text(f"SELECT * FROM {t}")).all())) for t in tables}


def _assignment(fleet: Any, device: Any, response: Any) -> Any:
    assert response.status_code == 200, response.text
    envelope = response.json()["assignment"]
    assert envelope is not None
    key = ed25519_from_hex(device.enrollment["director_key"]["keyval"]["public"])
    return verify_assignment(envelope, key, device_id=device.device_id, now=NOW)


def test_enrollment_returns_the_pins_and_the_token_works_once(fleet: Any) -> None:
    token = fleet.token(model="kws", labels={"site": "lab"})
    dev = fleet.new_device()
    r = dev.enroll(token)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["device_id"].startswith("d-")
    assert body["tuf_root"]["signed"]["_type"] == "root"
    assert body["director_key"]["keytype"] == "ed25519"
    assert body["poll_interval_s"] == 30.0
    before = _state(fleet)
    r2 = fleet.new_device().enroll(token)
    assert r2.status_code == 401
    assert "already used" in r2.json()["detail"]
    assert _state(fleet) == before
    info = fleet.client.get(f"/v1/admin/devices/{dev.device_id}", headers=fleet.admin).json()
    assert (info["model"], info["labels"], info["name"]) == ("kws", {"site": "lab"}, "test-device")


def test_enrollment_must_be_signed_by_the_key_it_enrolls(sqlite_fleet: Any) -> None:
    fleet = sqlite_fleet
    token = fleet.token()
    dev, thief = fleet.new_device(), fleet.new_device()
    body = dev.enroll_body(token)
    headers = sign_request(thief.signing, ENROLL_DEVICE_ID, "POST", "/v1/enroll", body)
    before = _state(fleet)
    r = fleet.client.post("/v1/enroll", content=body, headers=headers)
    assert r.status_code == 401 and "does not verify" in r.json()["detail"]
    assert _state(fleet) == before
    assert fleet.new_device().enroll("elt_not-a-token").status_code == 401
    assert dev.enroll(token).status_code == 201  # the token was not spent by the refusals
    expired = fleet.token(ttl_s=0.001)
    time.sleep(0.01)
    r = fleet.new_device().enroll(expired)
    assert r.status_code == 401 and "expired" in r.json()["detail"]


def test_checkin_returns_a_signed_assignment_of_the_fitting_variant(fleet: Any) -> None:
    vnni = fleet.device()
    plain = fleet.device(profile="arm")
    assert vnni.checkin().json()["assignment"] is None  # nothing released yet
    fleet.release("kws", 1, {"fp32": {}, "int8": {"isa": ["avx512_vnni"]}})
    a = _assignment(fleet, vnni, vnni.checkin())
    b = _assignment(fleet, plain, plain.checkin())
    assert (a.model, a.version, a.variant, a.rollback) == ("kws", 1, "int8", False)
    assert (b.variant, b.target) == ("fp32", "kws/1/kws-1-fp32.elb")
    releases = fleet.client.get("/v1/admin/releases", headers=fleet.admin).json()["releases"]
    by_variant = {v["variant"]: v for v in releases[0]["variants"]}
    assert by_variant["int8"]["sha256"] == a.sha256 and by_variant["int8"]["length"] == a.length


def test_a_desired_version_older_than_the_installed_one_is_a_signed_rollback(
    sqlite_fleet: Any,
) -> None:
    fleet = sqlite_fleet
    dev = fleet.device()
    fleet.release("kws", 1, {"fp32": {}})
    fleet.release("kws", 2, {"fp32": {}})
    installed = InstalledModel("kws", 2, "fp32").to_dict()
    assert _assignment(fleet, dev, dev.checkin(installed)).version == 2
    r = fleet.client.put("/v1/admin/models/kws/desired", json={"version": 1}, headers=fleet.admin)
    assert r.status_code == 200
    back = _assignment(fleet, dev, dev.checkin(installed))
    assert (back.version, back.rollback) == (1, True)
    unpublished = fleet.client.put(
        "/v1/admin/models/kws/desired", json={"version": 7}, headers=fleet.admin
    )
    assert unpublished.status_code == 409


def _bad_requests(dev: Any) -> dict[str, tuple[bytes, dict[str, str]]]:
    payload = {"agent_version": "0.1.0", "health": "ok"}
    body, headers = dev.signed("/v1/checkin", payload)
    tampered = body.replace(b'"ok"', b'"failing"')
    stale, stale_h = dev.signed("/v1/checkin", payload, timestamp=int(time.time()) - 3600)
    unsigned = {k: v for k, v in headers.items() if k != "Edgeloop-Signature"}
    other = dict(headers, **{"Edgeloop-Device": "d-" + "0" * 32})
    return {
        "tampered body": (tampered, headers),
        "stale timestamp": (stale, stale_h),
        "no signature": (body, unsigned),
        "unknown device": (body, other),
    }


def test_bad_signatures_stale_and_unknown_requests_get_401_and_change_nothing(fleet: Any) -> None:
    dev = fleet.device()
    for what, (body, headers) in _bad_requests(dev).items():
        before = _state(fleet)
        r = fleet.client.post("/v1/checkin", content=body, headers=headers)
        assert r.status_code == 401, what
        assert _state(fleet) == before, what
    metrics = fleet.client.get("/metrics").text
    assert 'edgeloop_fleet_auth_failures_total{reason="stale"} 1.0' in metrics
    assert 'edgeloop_fleet_auth_failures_total{reason="bad_signature"} 1.0' in metrics
    assert 'edgeloop_fleet_auth_failures_total{reason="unknown_device"} 1.0' in metrics
    # every request counted by its route and status (the metrics middleware, plain ASGI)
    n = len(_bad_requests(dev))
    assert f'edgeloop_fleet_requests_total{{endpoint="/v1/checkin",status="401"}} {n}.0' in metrics
    assert 'edgeloop_fleet_request_seconds_count{endpoint="/v1/checkin"}' in metrics


def test_a_replayed_request_is_refused_and_changes_nothing(fleet: Any) -> None:
    dev = fleet.device()
    body, headers = dev.signed("/v1/checkin", {"agent_version": "0.1.0", "health": "ok"})
    assert fleet.client.post("/v1/checkin", content=body, headers=headers).status_code == 200
    before = _state(fleet)
    replay = fleet.client.post("/v1/checkin", content=body, headers=headers)
    assert replay.status_code == 401
    assert "seen before" in replay.json()["detail"]
    assert _state(fleet) == before


def test_a_revoked_device_gets_403_and_changes_nothing(fleet: Any) -> None:
    dev = fleet.device()
    r = fleet.client.post(f"/v1/admin/devices/{dev.device_id}/revoke", headers=fleet.admin)
    assert r.status_code == 200 and r.json()["revoked"] is True
    before = _state(fleet)
    assert dev.checkin().status_code == 403
    report = {"device_id": dev.device_id, "model": None, "version": None, "window_s": 60.0}
    assert dev.post("/v1/telemetry", report).status_code == 403
    assert _state(fleet) == before


def test_telemetry_lands_in_the_inventory(fleet: Any) -> None:
    dev = fleet.device()
    installed = InstalledModel("kws", 1, "int8", "ab" * 32).to_dict()
    assert dev.checkin(installed, last_error="none").status_code == 200
    report = {
        "device_id": dev.device_id,
        "model": "kws",
        "version": 1,
        "window_s": 60.0,
        "metrics": {"requests": 120.0, "errors": 1.0, "p50_ms": 2.5, "p99_ms": 9.0, "rss_mb": 80.0},
        "agent_version": "0.1.0",
    }
    r = dev.post("/v1/telemetry", report)
    assert r.status_code == 202 and r.json() == {"accepted": 1}
    foreign = dict(report, device_id="d-" + "1" * 32)
    assert dev.post("/v1/telemetry", foreign).status_code == 403
    info = fleet.client.get(f"/v1/admin/devices/{dev.device_id}", headers=fleet.admin).json()
    assert info["installed"]["version"] == 1 and info["installed"]["variant"] == "int8"
    assert info["health"] == "ok" and info["agent_version"] == "0.1.0"
    assert info["profile"]["isa"] == ["avx2", "avx512_vnni"]
    assert info["last_seen"] is not None
    assert [rep["metrics"]["p99_ms"] for rep in info["reports"]] == [9.0]
    listed = fleet.client.get("/v1/admin/devices", headers=fleet.admin).json()["devices"]
    assert [d["device_id"] for d in listed] == [dev.device_id]


def test_malformed_bodies_are_400_with_the_field_named(sqlite_fleet: Any) -> None:
    dev = sqlite_fleet.device()
    r = dev.post("/v1/checkin", {"agent_version": "0.1.0", "health": "great"})
    assert r.status_code == 400 and "health 'great'" in r.json()["detail"]
    r = dev.post("/v1/telemetry", {"device_id": dev.device_id})
    assert r.status_code == 400 and "window_s" in r.json()["detail"]
    huge = {"device_id": dev.device_id, "window_s": 1.0, "padding": "x" * (1 << 20)}
    r = dev.post("/v1/telemetry", huge)
    assert r.status_code == 413 and "at most 1048576" in r.json()["detail"]


def test_the_data_key_is_rewrapped_so_only_that_device_decrypts(sqlite_fleet: Any) -> None:
    fleet = sqlite_fleet
    dev, other = fleet.device(), fleet.device()
    fleet.release("kws", 1, {"fp32": {}})
    a = _assignment(fleet, dev, dev.checkin())
    r = dev.post("/v1/keys", {"target": a.target})
    assert r.status_code == 200, r.text
    recipient = r.json()["recipient"]
    bundle = next(fleet.settings.tuf_path.glob("targets/kws/1/*.elb")).read_bytes()
    trust = Trust.from_root_bytes(fleet.settings.keys_path.joinpath("root.json").read_bytes())
    manifest = verify(bundle, trust)
    model = decrypt(bundle, manifest, dev.encryption, recipient)
    assert model.startswith(b"\x08")  # an ONNX ModelProto (field 1, ir_version)
    with pytest.raises(Exception, match="not encrypted for|cannot unwrap|fails authentication"):
        decrypt(bundle, manifest, other.encryption, recipient)
    assert dev.post("/v1/keys", {"target": "kws/9/nope.elb"}).status_code == 404


def test_a_bundle_not_encrypted_to_the_fleet_key_is_refused(sqlite_fleet: Any) -> None:
    fleet = sqlite_fleet
    fleet.push("kws", 1, {"fp32": {}}, encrypt=False)
    r = fleet.client.post(
        "/v1/admin/releases", json={"model": "kws", "version": 1}, headers=fleet.admin
    )
    assert r.status_code == 409 and "not encrypted to this fleet" in r.json()["detail"]
    assert fleet.client.get("/v1/admin/releases", headers=fleet.admin).json()["releases"] == []


def test_admin_api_needs_the_admin_token(sqlite_fleet: Any) -> None:
    c = sqlite_fleet.client
    assert c.get("/v1/admin/devices").status_code == 401
    wrong = {"Authorization": "Bearer " + "x" * 43}
    assert c.post("/v1/admin/tokens", json={}, headers=wrong).status_code == 401
    assert c.get("/v1/admin/devices", headers=sqlite_fleet.admin).status_code == 200


def test_admin_and_rollout_routers_share_one_admin_check(sqlite_fleet: Any) -> None:
    c = sqlite_fleet.client
    wrong = {"Authorization": "Bearer " + "x" * 43}
    basic = {"Authorization": "Basic " + sqlite_fleet.admin["Authorization"].split()[1]}

    refusals = [
        c.get(path, headers=headers).json()["detail"]
        for path in ("/v1/admin/devices", "/v1/admin/rollouts")
        for headers in ({}, wrong, basic)
    ]

    assert len(set(refusals)) == 1 and "Bearer <admin token>" in refusals[0]
    assert c.get("/v1/admin/rollouts", headers=sqlite_fleet.admin).status_code == 200


def test_openapi_metrics_health_and_tuf_are_served(sqlite_fleet: Any) -> None:
    c = sqlite_fleet.client
    schema = c.get("/openapi.json").json()
    assert {"/v1/enroll", "/v1/checkin", "/v1/telemetry", "/v1/keys", "/v1/admin/releases"} <= set(
        schema["paths"]
    )
    assert c.get("/healthz").json()["status"] == "ok"
    root = c.get("/tuf/metadata/root.json")
    assert root.status_code == 200 and json.loads(root.content)["signed"]["_type"] == "root"
    assert c.get("/tuf/metadata/timestamp.json").status_code == 200
    assert c.get("/tuf/metadata/../../admin-token").status_code == 404
    text = c.get("/metrics").text
    assert 'edgeloop_fleet_devices{state="enrolled"} 0.0' in text
    assert "edgeloop_fleet_request_seconds_bucket" in text


def test_a_restarted_server_loses_nothing(fleet_settings: FleetSettings, fleet_on: Any) -> None:
    with TestClient(create_app(fleet_settings)) as client:
        fleet = fleet_on(fleet_settings, client)
        token = fleet.token()
        first = fleet.device()
        root = client.get("/tuf/metadata/root.json").content
    with TestClient(create_app(fleet_settings)) as client:
        fleet = fleet_on(fleet_settings, client)
        second = fleet.new_device()
        assert second.enroll(token).status_code == 201  # a token issued before the restart
        assert second.enrollment["director_key"] == first.enrollment["director_key"]
        assert client.get("/tuf/metadata/root.json").content == root
    with TestClient(create_app(fleet_settings)) as client:
        fleet = fleet_on(fleet_settings, client)
        first.client = second.client = client
        listed = client.get("/v1/admin/devices", headers=fleet.admin).json()["devices"]
        assert sorted(d["device_id"] for d in listed) == sorted([first.device_id, second.device_id])
        assert first.checkin().status_code == 200
        assert second.checkin().status_code == 200


def test_a_token_with_uses_enrolls_that_many_devices(sqlite_fleet: Any) -> None:
    fleet = sqlite_fleet
    token = fleet.token(uses=2)
    assert fleet.new_device().enroll(token).status_code == 201
    assert fleet.new_device().enroll(token).status_code == 201
    third = fleet.new_device().enroll(token)
    assert third.status_code == 401 and "already used" in third.json()["detail"]
    bad = fleet.client.post("/v1/admin/tokens", json={"uses": 0}, headers=fleet.admin)
    assert bad.status_code == 400 and "uses 0" in bad.json()["detail"]


def test_two_server_processes_share_one_fleet_and_its_replay_protection(
    fleet_settings: FleetSettings, fleet_on: Any
) -> None:
    with (
        TestClient(create_app(fleet_settings)) as one,
        TestClient(create_app(fleet_settings)) as two,
    ):
        a, b = fleet_on(fleet_settings, one), fleet_on(fleet_settings, two)
        dev = a.device()
        body, headers = dev.signed("/v1/checkin", {"agent_version": "0.1.0", "health": "ok"})
        assert one.post("/v1/checkin", content=body, headers=headers).status_code == 200
        assert two.post("/v1/checkin", content=body, headers=headers).status_code == 401
        dev.client = two
        assert dev.checkin().status_code == 200
        listed = two.get("/v1/admin/devices", headers=b.admin).json()["devices"]
        assert [d["health"] for d in listed] == ["ok"]


def test_expired_nonces_are_swept_and_the_inventory_says_who_is_online(
    sqlite_fleet: Any,
) -> None:
    fleet = sqlite_fleet
    dev = fleet.device()
    payload = {"agent_version": "0.1.0", "health": "ok"}
    assert dev.post("/v1/checkin", payload, nonce="1" * 31 + "1").status_code == 200
    engine = fleet.client.app.state.ctx.engine
    with engine.begin() as c:
        c.execute(sa.text("UPDATE fleet_nonces SET seen_at = '2000-01-01 00:00:00'"))
        c.execute(sa.text("UPDATE fleet_devices SET last_seen = '2000-01-01 00:00:00'"))
    info = fleet.client.get(f"/v1/admin/devices/{dev.device_id}", headers=fleet.admin).json()
    assert info["online"] is False
    assert dev.post("/v1/checkin", payload, nonce="2" * 31 + "0").status_code == 200  # sweeps
    with engine.connect() as c:
        left = [r[0] for r in c.execute(sa.text("SELECT nonce FROM fleet_nonces"))]
    assert left == ["2" * 31 + "0"]
    info = fleet.client.get(f"/v1/admin/devices/{dev.device_id}", headers=fleet.admin).json()
    assert info["online"] is True


def test_the_tuf_timestamp_is_resigned_before_it_expires(sqlite_fleet: Any) -> None:
    from datetime import timedelta

    from edgeloop.db import write_session
    from edgeloop.fleet._publish import refresh_timestamp_if_due

    fleet = sqlite_fleet
    repo = fleet.client.app.state.ctx.repo
    engine = fleet.client.app.state.ctx.engine
    version = repo.current()[2].signed.version
    with write_session(engine) as s:
        assert refresh_timestamp_if_due(s, repo, datetime.now(timezone.utc)) is False
    later = datetime.now(timezone.utc) + timedelta(hours=13)
    with write_session(engine) as s:
        assert refresh_timestamp_if_due(s, repo, later) is True
    fresh = repo.current()[2].signed
    assert fresh.version == version + 1
    assert fresh.expires > later


def test_a_policy_loader_and_extra_routers_plug_into_the_app(tmp_path: Any, fleet_on: Any) -> None:
    from fastapi import APIRouter

    from edgeloop.fleet import DeviceState, FleetState
    from edgeloop.protocol import Release

    seen_sessions: list[Any] = []

    def loader(session: Any) -> Any:
        seen_sessions.append(session)

        def canary(device: DeviceState, model: str, fleet: FleetState) -> Any:
            version = 2 if device.labels.get("ring") == "canary" else fleet.desired[model]
            release: Release | None = fleet.release(model, version)
            return (release, f"ring -> {version}") if release else None

        return canary

    extra = APIRouter()
    extra.add_api_route("/dashboard/ping", lambda: {"pong": True})
    settings = FleetSettings(
        db_url=f"sqlite:///{tmp_path / 'p.db'}", data_dir=tmp_path / "d", create_release_keys=True
    )
    with TestClient(create_app(settings, policy_loader=loader, routers=[extra])) as client:
        fleet = fleet_on(settings, client)
        canary = fleet.device(labels={"ring": "canary"})
        control = fleet.device()
        fleet.release("kws", 1, {"fp32": {}})
        fleet.push("kws", 2, {"fp32": {}})
        published = client.post(
            "/v1/admin/releases", json={"model": "kws", "version": 2}, headers=fleet.admin
        )
        assert published.status_code == 201  # published, but the alias stays on 1
        assert _assignment(fleet, canary, canary.checkin()).reason == "ring -> 2"
        assert _assignment(fleet, control, control.checkin()).version == 1
        assert client.get("/dashboard/ping").json() == {"pong": True}
    assert len(seen_sessions) == 2


def test_concurrent_enrollments_with_one_token_enroll_one_device(
    fleet_settings: FleetSettings, fleet_on: Any
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    apps = [TestClient(create_app(fleet_settings)) for _ in range(3)]
    for c in apps:
        c.__enter__()
    try:
        token = fleet_on(fleet_settings, apps[0]).token()
        devices = [fleet_on(fleet_settings, c).new_device() for c in apps]
        with ThreadPoolExecutor(len(devices)) as pool:
            codes = sorted(pool.map(lambda d: d.enroll(token).status_code, devices))
        assert codes == [201, 401, 401]
        listed = apps[1].get("/v1/admin/devices", headers=fleet_on(fleet_settings, apps[1]).admin)
        assert len(listed.json()["devices"]) == 1
    finally:
        for c in apps:
            c.__exit__(None, None, None)


def test_old_telemetry_is_swept_and_the_inventory_pages(sqlite_fleet: Any) -> None:
    from datetime import timedelta

    from edgeloop.artifacts import DeviceReport
    from edgeloop.db import DeviceRow, write_session
    from edgeloop.fleet._store import record_report

    fleet = sqlite_fleet
    devs = [fleet.device() for _ in range(3)]
    engine = fleet.client.app.state.ctx.engine
    report = DeviceReport(device_id=devs[0].device_id, model="kws", version=1, window_s=60.0)
    long_ago = datetime(2026, 1, 1, tzinfo=timezone.utc)
    with write_session(engine) as s:
        row = s.get(DeviceRow, devs[0].device_id)
        record_report(s, row, report, long_ago)
        record_report(s, row, report, long_ago + timedelta(days=9), keep=timedelta(days=7))
    with engine.connect() as c:
        kept = c.execute(sa.text("SELECT received_at FROM fleet_reports")).scalars().all()
    assert len(kept) == 1 and str(kept[0]).startswith("2026-01-10")
    page = fleet.client.get("/v1/admin/devices?limit=2&offset=1", headers=fleet.admin).json()
    assert [d["device_id"] for d in page["devices"]] == [d.device_id for d in devs[1:3]]
    bad = fleet.client.get("/v1/admin/devices?limit=0", headers=fleet.admin)
    assert bad.status_code == 400


def test_an_admin_can_move_a_device_to_another_model_and_relabel_it(sqlite_fleet: Any) -> None:
    fleet = sqlite_fleet
    dev = fleet.device(labels={"site": "lab", "ring": "canary"})
    fleet.release("kws", 1, {"fp32": {}})
    fleet.release("vad", 1, {"fp32": {}})
    assert dev.checkin().json()["assignment"] is None  # two models, the device names none
    url = f"/v1/admin/devices/{dev.device_id}"
    body = {"model": "vad", "labels": {"ring": None, "region": "eu"}}
    r = fleet.client.patch(url, json=body, headers=fleet.admin)
    assert r.status_code == 200, r.text
    assert (r.json()["model"], r.json()["labels"]) == ("vad", {"site": "lab", "region": "eu"})
    assert _assignment(fleet, dev, dev.checkin()).model == "vad"
    bad = fleet.client.patch(url, json={"modle": "kws"}, headers=fleet.admin)
    assert bad.status_code == 400 and "unknown field(s) modle" in bad.json()["detail"]
    assert fleet.client.patch(url, json={"model": "a b"}, headers=fleet.admin).status_code == 400


def test_first_start_writes_the_secrets_owner_only(sqlite_fleet: Any) -> None:
    settings = sqlite_fleet.settings
    for path in (
        settings.admin_token_path,
        settings.director_path,
        settings.keys_path / "fleet.pem",
        settings.keys_path / "release.pem",
    ):
        assert path.stat().st_mode & 0o777 == 0o600, path
    assert len(settings.admin_token_path.read_text().strip()) >= 32
