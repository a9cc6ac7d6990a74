"""Rollout controls: rate limit, concurrent downloads, maintenance windows and failure
thresholds, in the director's policy and the rollout's tick (the database, no server)."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
import sqlalchemy as sa

from edgeloop.artifacts import RolloutControls, RolloutPlan, parse_utc_offset, parse_window
from edgeloop.db import DeviceRow, RolloutRow, read_session, write_session
from edgeloop.errors import InputError
from edgeloop.fleet import _rollout_store as rs
from edgeloop.fleet._canary import device_hash
from edgeloop.fleet._gates import GateOptions
from edgeloop.fleet._store import device_state, fleet_state, get_device

PLAN = RolloutPlan(model="kws", version=2, stages=(50.0, 100.0), soak_s=30.0, gates=())


def _start(db, at, **controls):
    with write_session(db.engine) as s:
        return rs.start_rollout(
            s,
            PLAN,
            alias="production",
            now=at(0),
            options=GateOptions(min_devices=3, min_requests=100),
            switch_timeout_s=60.0,
            controls=RolloutControls(**controls),
        ).id


def _checkin(db, when, only=None):
    """Every device (or ``only``) checks in at ``when``: the versions the director gives."""
    out = {}
    with write_session(db.engine) as s:
        policy = rs.policy_for(s, when)
        for device_id in sorted(db.versions()):
            if only is not None and device_id not in only:
                continue
            device = get_device(s, device_id)
            release, _ = policy(device_state(device), "kws", fleet_state(s, device, "production"))
            out[device_id] = release.version
    return out


def _stage(db, rid):
    with read_session(db.engine) as s:
        row = s.get(RolloutRow, rid)
        return sorted(d for d in db.versions() if device_hash(row.salt, d) <= row.cut)


def _set(db, ids, **values):
    with write_session(db.engine) as s:
        s.execute(sa.update(DeviceRow).where(DeviceRow.id.in_(ids)).values(**values))


def _get(db, rid):
    with read_session(db.engine) as s:
        return rs.rollout_dict(s, s.get(RolloutRow, rid))


def test_windows_and_offsets_parse_and_refuse_with_the_value() -> None:
    assert parse_window("02:00-05:00") == (120, 300)
    assert parse_window("22:30-04:00") == (1350, 240)
    assert parse_utc_offset("+02:00") == 120 and parse_utc_offset("-0530") == -330
    for bad in ("2-5", "02:00-02:00", "25:00-03:00", "02:00-24:30"):
        with pytest.raises(InputError, match="expected HH:MM-HH:MM"):
            parse_window(bad)
    with pytest.raises(InputError, match=r"'\+15:00'"):
        parse_utc_offset("+15:00")
    for field, value in [
        ("max_per_minute", 0),
        ("max_per_minute", 2.5),
        ("max_concurrent_downloads", True),
        ("max_failures", -1),
        ("max_failure_rate", 1.0),
        ("max_failure_rate", float("nan")),
        ("download_timeout_s", float("inf")),
        ("window_label", ""),
    ]:
        with pytest.raises(InputError, match=field):
            RolloutControls.from_dict({field: value})


def test_the_window_is_device_local_and_may_pass_midnight() -> None:
    c = RolloutControls(window="22:00-04:00", window_offset="+01:00")
    at = datetime(2026, 12, 3, 23, 30, tzinfo=timezone.utc)  # 00:30 at +01:00
    assert c.in_window(at, {})
    assert not c.in_window(at, {"utc_offset": "-08:00"})  # 15:30 there
    assert c.in_window(at, {"utc_offset": "nonsense"})  # a bad label: the rollout's default
    assert not RolloutControls(window="02:00-05:00").in_window(at, {})
    assert RolloutControls().in_window(at, {}) and not RolloutControls().tracked


def test_rate_limit_hands_the_version_out_per_minute(rollout_db, at):
    rollout_db.add_devices(20)
    rid = _start(rollout_db, at, max_per_minute=3)
    stage = _stage(rollout_db, rid)
    assert len(stage) == 10
    got = _checkin(rollout_db, at(1))
    first = [d for d, v in got.items() if v == 2]
    assert len(first) == 3 and set(first) <= set(stage)
    again = _checkin(rollout_db, at(30))  # the same three keep it; nobody else yet
    assert [d for d, v in again.items() if v == 2] == first
    later = _checkin(rollout_db, at(62))
    assert sum(v == 2 for v in later.values()) == 6
    assert all(later[d] == 1 for d in rollout_db.versions() if d not in stage)
    assert _get(rollout_db, rid)["devices"] == {"downloading": 6, "installed": 0, "failed": 0}


def test_concurrent_downloads_count_until_installed_or_timed_out(rollout_db, at):
    rollout_db.add_devices(10)
    rid = _start(rollout_db, at, max_concurrent_downloads=2, download_timeout_s=600.0)
    stage = _stage(rollout_db, rid)
    first = [d for d, v in _checkin(rollout_db, at(1), stage).items() if v == 2]
    assert len(first) == 2
    assert sum(v == 2 for v in _checkin(rollout_db, at(5), stage).values()) == 2
    rollout_db.install(first[:1], 2)  # one reports the new version installed: a slot frees
    got = _checkin(rollout_db, at(10), stage)
    assert sum(v == 2 for v in got.values()) == 3
    assert _get(rollout_db, rid)["devices"] == {"downloading": 2, "installed": 1, "failed": 0}
    # nobody reports back: after the download timeout the two stop counting
    assert sum(v == 2 for v in _checkin(rollout_db, at(300), stage).values()) == 3
    assert sum(v == 2 for v in _checkin(rollout_db, at(615), stage).values()) == 5


def test_outside_its_window_a_device_keeps_its_version_until_its_window(rollout_db, at):
    # T0 is 12:00 UTC: 03:00 at -09:00 is inside 02:00-05:00, 12:00 at +00:00 is not
    far = rollout_db.add_devices(10, utc_offset="-09:00")
    near = rollout_db.add_devices(10)
    rid = _start(rollout_db, at, window="02:00-05:00")
    stage = set(_stage(rollout_db, rid))
    got = _checkin(rollout_db, at(1))
    assert {d for d, v in got.items() if v == 2} == stage & set(far)
    assert all(got[d] == 1 for d in near)
    # 15:00 UTC is 06:00 at -09:00 (closed) and a device already given it keeps it
    later = _checkin(rollout_db, at(3 * 3600))
    assert {d for d, v in later.items() if v == 2} == stage & set(far)


def test_more_failures_than_allowed_fail_the_rollout_and_send_the_stage_back(rollout_db, at):
    rollout_db.add_devices(20)
    rid = _start(rollout_db, at, max_failures=1)
    stage = _stage(rollout_db, rid)
    _checkin(rollout_db, at(1))
    rollout_db.install(stage[2:], 2)
    _set(
        rollout_db,
        stage[:1],
        last_error="kws@2 refused: self-test output differs",
        health="degraded",
    )
    _checkin(rollout_db, at(10))
    with write_session(rollout_db.engine) as s:
        rs.drive(s, at(11))
    r = _get(rollout_db, rid)
    assert r["state"] in ("running", "soaking") and r["devices"]["failed"] == 1
    # one more: a device that installed it and fell back to version 1 (its trial failed)
    rollout_db.install(stage[2:3], 1)
    _set(rollout_db, stage[2:3], last_error="12 of 20 requests failed after the switch")
    got = _checkin(rollout_db, at(20))
    assert got[stage[0]] == 1 and got[stage[2]] == 1  # failed devices are not sent it again
    with write_session(rollout_db.engine) as s:
        rs.drive(s, at(21))
    r = _get(rollout_db, rid)
    assert r["state"] == "failed" and r["devices"]["failed"] == 2
    assert rs.FAILURES_GATE in r["reason"] and "2 device(s) failed" in r["reason"]
    assert all(v == 1 for v in _checkin(rollout_db, at(30)).values())


def test_a_failure_rate_counts_against_the_stage(rollout_db, at):
    rollout_db.add_devices(40)
    rid = _start(rollout_db, at, max_failure_rate=0.1)
    stage = _stage(rollout_db, rid)  # 20 devices: more than 2 failures fail it
    _checkin(rollout_db, at(1))
    _set(rollout_db, stage[:2], last_error="kws@2 refused: signature")
    _checkin(rollout_db, at(10))
    with write_session(rollout_db.engine) as s:
        rs.drive(s, at(11))
    assert _get(rollout_db, rid)["state"] == "running"
    _set(rollout_db, stage[2:3], last_error="kws@2 refused: self-test")
    _checkin(rollout_db, at(20))
    with write_session(rollout_db.engine) as s:
        rs.drive(s, at(21))
    r = _get(rollout_db, rid)
    assert r["state"] == "failed" and "15.0% of the stage" in r["reason"]


def test_a_fall_back_between_two_check_ins_is_counted(rollout_db, at):
    """Installed and fallen back before its next check-in: the agent's message names the
    version it fell back from (what the agent writes: tests/agent)."""
    rollout_db.add_devices(10)
    rid = _start(rollout_db, at, max_failures=0)
    stage = _stage(rollout_db, rid)
    _checkin(rollout_db, at(1))
    _set(
        rollout_db,
        stage[:1],
        last_error="kws@2 fell back: 9 of 20 requests failed after the switch (last: boom)",
        health="degraded",
    )
    got = _checkin(rollout_db, at(10))
    assert got[stage[0]] == 1 and _get(rollout_db, rid)["devices"]["failed"] == 1
    with write_session(rollout_db.engine) as s:
        rs.drive(s, at(11))
    assert _get(rollout_db, rid)["state"] == "failed"


def test_a_transient_install_failure_is_not_counted(rollout_db, at):
    rollout_db.add_devices(10)
    rid = _start(rollout_db, at, max_failures=0)
    stage = _stage(rollout_db, rid)
    _checkin(rollout_db, at(1))
    _set(rollout_db, stage, last_error="install of kws@2 failed: No space left on device")
    assert all(v == 2 for d, v in _checkin(rollout_db, at(10)).items() if d in stage)
    with write_session(rollout_db.engine) as s:
        rs.drive(s, at(11))
    assert _get(rollout_db, rid)["state"] == "running"


def test_a_rollout_without_controls_records_no_devices(rollout_db, at):
    rollout_db.add_devices(10)
    rid = _start(rollout_db, at)
    got = _checkin(rollout_db, at(1))
    assert sum(v == 2 for v in got.values()) == len(_stage(rollout_db, rid))
    assert "devices" not in _get(rollout_db, rid)


def test_a_device_already_on_the_version_uses_no_share_of_the_rate(rollout_db, at):
    rollout_db.add_devices(20)
    rid = _start(rollout_db, at, max_per_minute=2)
    stage = _stage(rollout_db, rid)
    rollout_db.install(stage[:3], 2)  # already there (e.g. from an earlier, aborted rollout)
    got = _checkin(rollout_db, at(1))
    assert sum(v == 2 for v in got.values()) == 5  # the three keep it, two more get it
    assert _get(rollout_db, rid)["devices"]["downloading"] == 2
