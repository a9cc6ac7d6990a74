"""The check-in's cost cuts (docs/scale.md): an unchanged assignment is not signed again, the
check-in's writes go through one group commit that still refuses every replay, and the fleet
state is cached per process until the database's generation counter moves."""

from __future__ import annotations

import dataclasses
import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from edgeloop.bundle import generate_signing_key
from edgeloop.db import GenerationRow, make_engine, read_session, upgrade, write_session
from edgeloop.fleet import FleetSettings, create_app
from edgeloop.fleet._batch import CheckinWriter
from edgeloop.fleet._signed import SignedAssignments
from edgeloop.protocol import (
    Assignment,
    ed25519_from_hex,
    iso_time,
    payload_sha256,
    verify_assignment,
)

VNNI = {"isa": ["avx512_vnni"]}


def _released(fleet: Any) -> Any:
    fleet.release("kws", 1, {"int8": VNNI, "fp32": {}})
    return fleet.device(model="kws")


def test_a_device_holding_its_assignment_gets_unchanged_without_an_envelope(fleet: Any) -> None:
    dev = _released(fleet)
    first = dev.checkin().json()
    envelope = first["assignment"]
    assert envelope is not None and first["unchanged"] is False
    held = payload_sha256(envelope)
    answer = dev.checkin(assignment_sha256=held).json()
    assert answer["unchanged"] is True and answer["assignment"] is None
    # another hash (an older assignment, a corrupt one): the full envelope again, the same one
    # (not signed again: it is within the first half of its lifetime)
    again = dev.checkin(assignment_sha256="0" * 64).json()
    assert again["unchanged"] is False and again["assignment"] == envelope
    state = fleet.client.app.state.fleet
    assert state.signed.signed == 1 and state.signed.reused >= 2
    # the inventory still records what an unchanged check-in reported
    r = dev.checkin(
        installed={"model": "kws", "version": 1, "variant": "int8", "sha256": "a" * 64},
        assignment_sha256=held,
    )
    assert r.json()["unchanged"] is True
    info = fleet.client.get(f"/v1/admin/devices/{dev.device_id}", headers=fleet.admin).json()
    assert info["installed"]["version"] == 1


def test_a_new_version_is_signed_even_for_a_device_that_sends_its_old_hash(fleet: Any) -> None:
    dev = _released(fleet)
    held = payload_sha256(dev.checkin().json()["assignment"])
    fleet.release("kws", 2, {"fp32": {}})
    answer = dev.checkin(assignment_sha256=held).json()
    assert answer["unchanged"] is False
    key = fleet.client.app.state.ctx.secrets.director_key.public_key()
    got = verify_assignment(answer["assignment"], key, device_id=dev.device_id)
    assert got.version == 2


@pytest.mark.parametrize("bad", ["xyz", "A" * 64, 7, "0" * 63])
def test_a_malformed_assignment_hash_is_a_400(sqlite_fleet: Any, bad: Any) -> None:
    dev = sqlite_fleet.device()
    r = dev.checkin(assignment_sha256=bad)
    assert r.status_code == 400 and "assignment_sha256" in r.json()["detail"]


def _assignment(device: str, version: int, now: datetime, ttl_s: float = 100.0) -> Assignment:
    return Assignment(
        device_id=device,
        model="kws",
        version=version,
        variant="fp32",
        target=f"kws/{version}/kws-{version}-fp32.elb",
        sha256="b" * 64,
        length=10,
        issued_at=iso_time(now),
        expires_at=iso_time(now + timedelta(seconds=ttl_s)),
        rollback=False,
        reason="alias production -> 1",
    )


def test_a_kept_envelope_is_renewed_past_half_its_lifetime() -> None:
    key = generate_signing_key()
    cache = SignedAssignments(max_devices=2)
    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    first = cache.sign(_assignment("d-1", 1, t0), key, t0)
    assert first.fresh
    later = t0 + timedelta(seconds=30)
    kept = cache.sign(_assignment("d-1", 1, later), key, later)
    assert not kept.fresh and kept.envelope == first.envelope
    past_half = t0 + timedelta(seconds=51)
    renewed = cache.sign(_assignment("d-1", 1, past_half), key, past_half)
    assert renewed.fresh and renewed.sha256 != first.sha256
    # a field added to the assignment (the director's delta pick) is part of its content
    with_delta = dataclasses.replace(
        _assignment("d-1", 1, later),
        delta={"target": "kws/1/d.eld", "sha256": "c" * 64, "length": 5},
    )
    assert cache.sign(with_delta, key, later).fresh
    # another version is another assignment; and the cache stays within its bound
    assert cache.sign(_assignment("d-1", 2, past_half), key, past_half).fresh
    for d in ("d-2", "d-3"):
        cache.sign(_assignment(d, 1, past_half), key, past_half)
    assert cache.sign(_assignment("d-1", 2, past_half), key, past_half).fresh  # evicted


def test_the_group_commit_refuses_a_nonce_seen_in_the_same_batch_or_before(fleet: Any) -> None:
    a, b = (fleet.device().device_id for _ in range(2))
    engine = make_engine(fleet.settings.db_url)
    try:
        writer = CheckinWriter(engine, nonce_ttl=timedelta(seconds=600))
        other = CheckinWriter(engine, nonce_ttl=timedelta(seconds=600))  # another process's
        now = datetime.now(timezone.utc)
        n = "n" * 32
        results: list[bool] = []
        lock = threading.Lock()

        def submit(w: CheckinWriter, device: str, health: str) -> None:
            ok = w.submit(device, n, now, {"last_seen": now, "health": health})
            with lock:
                results.append(ok)

        threads = [
            threading.Thread(target=submit, args=(w, a, "ok"))
            for w in (writer, writer, other, other, writer)
        ]
        threads.append(threading.Thread(target=submit, args=(other, b, "degraded")))
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        # one (device a, nonce) accepted among five racing in two writers; device b's own
        assert sorted(results) == [False, False, False, False, True, True]
        assert writer.submit(a, n, now, None) is False  # and later too
        with read_session(engine) as s:
            health = dict(s.execute(sa.text("SELECT id, health FROM fleet_devices")).all())
        assert health[b] == "degraded" and health[a] == "ok"
    finally:
        engine.dispose()


def test_a_replay_is_refused_by_another_server_on_the_same_database(fleet: Any) -> None:
    dev = _released(fleet)
    body, headers = dev.signed("/v1/checkin", {"agent_version": "0.1.0", "health": "ok"})
    assert fleet.client.post("/v1/checkin", content=body, headers=headers).status_code == 200
    second = FleetSettings(
        db_url=fleet.settings.db_url,
        data_dir=fleet.settings.data_dir,
        poll_interval_s=30.0,
    )
    with TestClient(create_app(second)) as other:
        r = other.post("/v1/checkin", content=body, headers=headers)
        assert r.status_code == 401 and "seen before" in r.json()["detail"]
        fresh = dev.signed("/v1/checkin", {"agent_version": "0.1.0", "health": "ok"})
        assert other.post("/v1/checkin", content=fresh[0], headers=fresh[1]).status_code == 200


def _generation(engine: Any) -> int:
    with read_session(engine) as s:
        value = s.scalar(sa.select(GenerationRow.value))
    assert value is not None
    return int(value)


def test_changes_the_director_reads_bump_the_generation_from_any_writer(db_url: str) -> None:
    upgrade(db_url)
    engine = make_engine(db_url)
    try:
        start = _generation(engine)
        with write_session(engine) as s:  # a registry alias moved by another process
            s.execute(
                sa.text(
                    "INSERT INTO fleet_releases (model, version, published_at) "
                    "VALUES ('kws', 1, :t)"
                ),
                {"t": datetime.now(timezone.utc)},
            )
        assert _generation(engine) > start
        mid = _generation(engine)
        with write_session(engine) as s:
            s.execute(sa.text("DELETE FROM fleet_releases WHERE model = 'kws'"))
        assert _generation(engine) > mid
        mid = _generation(engine)
        with write_session(engine) as s:  # what a check-in writes does not
            s.execute(sa.text("SELECT 1"))
        assert _generation(engine) == mid
    finally:
        engine.dispose()


def test_the_cached_fleet_state_follows_a_registry_alias_moved_outside_the_server(
    fleet: Any,
) -> None:
    from edgeloop.registry import Registry

    fleet.release("kws", 1, {"fp32": {}})
    fleet.release("kws", 2, {"fp32": {}})
    dev = fleet.device(model="kws")
    key = fleet.client.app.state.ctx.secrets.director_key.public_key()

    def version() -> int:
        env = dev.checkin().json()["assignment"]
        return verify_assignment(env, key, device_id=dev.device_id).version

    assert version() == 2
    assert version() == 2
    reads = fleet.client.app.state.fleet.fleet_states.reads
    with Registry(fleet.settings.db_url, fleet.settings.registry_path) as reg:
        # the registry CLI's path, not the server's
        reg.set_alias("kws@1", "production", reason="test")
    assert version() == 1
    assert fleet.client.app.state.fleet.fleet_states.reads == reads + 1


def test_telemetry_shares_the_check_ins_group_commit_and_a_replay_writes_nothing(
    fleet: Any,
) -> None:
    from edgeloop.artifacts import DeviceReport
    from edgeloop.db import ReportRow
    from edgeloop.fleet._batch import Telemetry
    from edgeloop.fleet._store import report_row

    a, b = (fleet.device().device_id for _ in range(2))
    engine = make_engine(fleet.settings.db_url)
    try:
        writer = CheckinWriter(engine, nonce_ttl=timedelta(seconds=600))
        gate, entered = threading.Event(), threading.Event()
        commit = writer._commit

        def held_commit(batch: Any) -> None:  # the first batch waits until the rest queued
            if not entered.is_set():
                entered.set()
                assert gate.wait(30)
            commit(batch)

        writer._commit = held_commit  # type: ignore[method-assign]
        now = datetime.now(timezone.utc)

        def telemetry(device: str, requests: float) -> Telemetry:
            report = DeviceReport(
                device_id=device, model="kws", version=1, window_s=60.0,
                metrics={"requests": requests},
            )
            return Telemetry(report=report_row(device, report, now))

        results: dict[str, list[bool]] = {}
        lock = threading.Lock()

        def submit(name: str, device: str, nonce: str, tele: Telemetry | None) -> None:
            ok = writer.submit(device, nonce, now, {"last_seen": now}, tele)
            with lock:
                results.setdefault(name, []).append(ok)

        first = threading.Thread(target=submit, args=("checkin a", a, "n1" * 16, None))
        first.start()
        assert entered.wait(30)
        queued = [
            ("telemetry a", a, "n2" * 16, telemetry(a, 1.0)),
            ("telemetry b", b, "n3" * 16, telemetry(b, 2.0)),
            ("telemetry b", b, "n3" * 16, telemetry(b, 3.0)),  # replayed within the batch
            ("checkin b", b, "n4" * 16, None),
        ]
        threads = [threading.Thread(target=submit, args=q) for q in queued]
        for t in threads:
            t.start()
        while len(writer._queue) < len(queued):
            time.sleep(0.01)
        gate.set()
        for t in [first, *threads]:
            t.join()
        assert results["checkin a"] == [True] and results["telemetry a"] == [True]
        assert sorted(results["telemetry b"]) == [False, True] and results["checkin b"] == [True]
        assert writer.transactions == 2  # the four queued writes went in one transaction
        # a replayed report is refused by the database's key in a later batch too
        assert writer.submit(a, "n2" * 16, now, {"last_seen": now}, telemetry(a, 9.0)) is False
        with read_session(engine) as s:
            rows = s.execute(sa.select(ReportRow.device_id, ReportRow.metrics)).all()
        assert sorted((d, m["requests"]) for d, m in rows) in (
            sorted([(a, 1.0), (b, 2.0)]),
            sorted([(a, 1.0), (b, 3.0)]),
        )
    finally:
        engine.dispose()


def test_a_replayed_telemetry_request_is_a_401_and_stores_one_report(fleet: Any) -> None:
    dev = fleet.device()
    payload = {
        "device_id": dev.device_id, "model": "kws", "version": 1, "window_s": 60.0,
        "metrics": {"requests": 3.0},
    }
    body, headers = dev.signed("/v1/telemetry", payload)
    assert fleet.client.post("/v1/telemetry", content=body, headers=headers).status_code == 202
    again = fleet.client.post("/v1/telemetry", content=body, headers=headers)
    assert again.status_code == 401 and "seen before" in again.json()["detail"]
    info = fleet.client.get(f"/v1/admin/devices/{dev.device_id}", headers=fleet.admin).json()
    assert info["last_seen"] is not None
    engine = make_engine(fleet.settings.db_url)
    try:
        with read_session(engine) as s:
            assert s.scalar(sa.text("SELECT count(*) FROM fleet_reports")) == 1
    finally:
        engine.dispose()


def test_an_idle_database_connection_killed_meanwhile_is_replaced_before_use(
    fleet: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not fleet.settings.db_url.startswith("postgresql"):
        pytest.skip("a database server's connections (SQLite has none to lose)")
    import edgeloop.fleet._app as app_module

    dev = fleet.device()
    assert dev.checkin().status_code == 200
    monkeypatch.setattr(app_module, "_IDLE_PING_S", 0.0)  # every pooled connection is idle
    other = make_engine(fleet.settings.db_url)
    try:
        with other.connect() as c:  # the server's pooled connections die (a restart, a proxy)
            killed = c.execute(
                sa.text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                    "AND backend_type = 'client backend'"
                )
            ).scalar()
        assert killed and killed >= 1
    finally:
        other.dispose()
    for _ in range(3):  # each request's connections are pinged, found dead and replaced
        assert dev.checkin().status_code == 200


def _report(device_id: str) -> dict[str, Any]:
    from edgeloop.artifacts import DeviceReport

    report = DeviceReport(
        device_id=device_id, model="kws", version=1, window_s=30.0, metrics={"requests": 1.0}
    )
    return report.to_dict()


def _other_server(fleet: Any) -> TestClient:
    """A second server process's app on the same database and data dir."""
    settings = FleetSettings(
        db_url=fleet.settings.db_url, data_dir=fleet.settings.data_dir, poll_interval_s=30.0
    )
    return TestClient(create_app(settings))


def test_a_device_is_read_once_per_process_until_something_it_reads_changes(
    fleet: Any,
) -> None:
    dev = _released(fleet)
    devices = fleet.client.app.state.fleet.devices
    for _ in range(4):
        assert dev.checkin().status_code == 200
        r = dev.post("/v1/telemetry", _report(dev.device_id))
        assert r.status_code == 202, r.text
    assert devices.reads == 1  # its own check-ins and reports leave the counter alone
    r = fleet.client.patch(
        f"/v1/admin/devices/{dev.device_id}", json={"labels": {"site": "b"}}, headers=fleet.admin
    )
    assert r.status_code == 200, r.text
    assert dev.checkin().status_code == 200
    assert devices.reads == 2  # a label change is read again


def test_devices_of_one_kind_share_one_parsed_profile_and_keep_their_own_variant(
    sqlite_fleet: Any,
) -> None:
    fleet = sqlite_fleet
    fleet.release("kws", 1, {"int8": VNNI, "fp32": {}})
    vnni = [fleet.device(model="kws") for _ in range(2)]
    plain = fleet.device("arm", model="kws")
    variants = []
    for dev in [*vnni, plain]:
        r = dev.checkin()
        assert r.status_code == 200, r.text
        key = ed25519_from_hex(dev.enrollment["director_key"]["keyval"]["public"])
        assignment = verify_assignment(r.json()["assignment"], key, device_id=dev.device_id)
        variants.append(assignment.variant)
    assert variants == ["int8", "int8", "fp32"]  # each device's own profile decides
    devices = fleet.client.app.state.fleet.devices
    kept = [devices._kept[d.device_id].device_profile for d in [*vnni, plain]]
    assert kept[0] is kept[1] and kept[2] is not kept[0]  # parsed once per kind
    assert kept[2].isa == ("neon",) and "avx512_vnni" in kept[0].isa


def test_a_revocation_refuses_the_next_request_in_every_process(fleet: Any) -> None:
    dev = _released(fleet)
    with _other_server(fleet) as other:
        dev.client = other
        assert dev.checkin().status_code == 200  # the other process keeps the device now
        assert dev.checkin().status_code == 200
        assert other.app.state.fleet.devices.reads == 1
        dev.client = fleet.client
        r = fleet.client.post(f"/v1/admin/devices/{dev.device_id}/revoke", headers=fleet.admin)
        assert r.status_code == 200, r.text
        dev.client = other
        r = dev.checkin()
        assert r.status_code == 403 and "revoked" in r.json()["detail"]
        assert dev.post("/v1/telemetry", _report(dev.device_id)).status_code == 403


def test_a_revocation_written_outside_the_server_refuses_the_next_request(fleet: Any) -> None:
    dev = _released(fleet)
    assert dev.checkin().status_code == 200
    engine = make_engine(fleet.settings.db_url)
    try:
        with write_session(engine) as s:  # another tool on the database, not the admin API
            s.execute(
                sa.text("UPDATE fleet_devices SET revoked = :t WHERE id = :d"),
                {"t": True, "d": dev.device_id},
            )
    finally:
        engine.dispose()
    assert dev.checkin().status_code == 403


def test_a_device_deleted_from_the_database_is_unknown_at_its_next_request(fleet: Any) -> None:
    dev = _released(fleet)
    assert dev.checkin().status_code == 200
    engine = make_engine(fleet.settings.db_url)
    try:
        with write_session(engine) as s:
            for table in ("fleet_nonces", "fleet_reports", "fleet_devices"):
                column = "id" if table == "fleet_devices" else "device_id"
                s.execute(sa.text(f"DELETE FROM {table} WHERE {column} = :d"), {"d": dev.device_id})
    finally:
        engine.dispose()
    r = dev.checkin()
    assert r.status_code == 401 and "not enrolled" in r.json()["detail"]


def test_a_rollout_started_by_another_process_reaches_a_process_that_kept_none(
    fleet: Any,
) -> None:
    fleet.release("kws", 1, {"fp32": {}})
    fleet.push("kws", 2, {"fp32": {}})
    r = fleet.client.post(
        "/v1/admin/releases", json={"model": "kws", "version": 2}, headers=fleet.admin
    )
    assert r.status_code == 201, r.text
    dev = fleet.device(model="kws")
    key = fleet.client.app.state.ctx.secrets.director_key.public_key()
    installed = {"model": "kws", "version": 1, "variant": "fp32", "sha256": "0" * 64}

    def version(client: TestClient) -> int:
        dev.client = client
        env = dev.checkin(installed).json()["assignment"]
        return verify_assignment(env, key, device_id=dev.device_id).version

    with _other_server(fleet) as other:
        assert version(other) == 1
        assert version(other) == 1  # no rollout for kws: kept as none
        r = fleet.client.post(
            "/v1/admin/rollouts", json={"model": "kws", "version": 2, "stages": [100]},
            headers=fleet.admin,
        )  # fmt: skip
        assert r.status_code == 201, r.text
        assert version(other) == 2
        engine = make_engine(fleet.settings.db_url)
        try:  # a change to the rollout's row alone (no alias moved), from outside the server
            with write_session(engine) as s:
                s.execute(sa.text("UPDATE fleet_rollouts SET cut = -1.0, stage_devices = 0"))
        finally:
            engine.dispose()
        assert version(other) == 1  # out of the stage now
