"""The rollout state machine in the database: stages, gates, rollback, restart, compare-and-set."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from edgeloop.artifacts import RolloutPlan
from edgeloop.db import RolloutEventRow, RolloutRow, make_engine, read_session, write_session
from edgeloop.errors import RolloutError
from edgeloop.fleet import _rollout_store as rs
from edgeloop.fleet._canary import device_hash
from edgeloop.fleet._director import DeviceState
from edgeloop.fleet._gates import GateOptions
from edgeloop.fleet._store import fleet_state, get_device
from edgeloop.registry import alias_history

PLAN = RolloutPlan(
    model="kws", version=2, stages=(10.0, 50.0, 100.0), soak_s=30.0, gates=("error_rate<0.02",)
)
OPTS = GateOptions(min_devices=3, min_requests=100)


def _start(db, at, plan=PLAN):
    with write_session(db.engine) as s:
        return rs.start_rollout(
            s, plan, alias="production", now=at(0), options=OPTS, switch_timeout_s=60.0
        ).id


def _tick(db, when):
    with write_session(db.engine) as s:
        return rs.drive(s, when)


def _row(db, rid):
    with read_session(db.engine) as s:
        row = s.get(RolloutRow, rid)
        s.expunge(row)
        return row


def _stage_ids(db, rid):
    row = _row(db, rid)
    return [d for d in db.versions() if device_hash(row.salt, d) <= row.cut]


def _follow_director(db, rid):
    """Every device installs what the director assigns it now (what agents do at check-in)."""
    with write_session(db.engine) as s:
        policy = rs.policy_for(s)
        moves: dict[int, list[str]] = {}
        for device_id in db.versions():
            device = get_device(s, device_id)
            state = DeviceState(device_id, "kws", None, None, None, device.labels)
            release, _ = policy(state, "kws", fleet_state(s, device, "production"))
            moves.setdefault(release.version, []).append(device_id)
    for version, ids in moves.items():
        db.install(ids, version)


def test_start_refuses_bad_plans(rollout_db, at):
    with pytest.raises(RolloutError, match="not published"):
        _start(rollout_db, at, RolloutPlan(model="kws", version=7, gates=()))
    with pytest.raises(RolloutError, match="increasing"):
        _start(rollout_db, at, RolloutPlan(model="kws", version=2, stages=(50.0, 10.0, 100.0)))
    with pytest.raises(RolloutError, match="already"):
        _start(rollout_db, at, RolloutPlan(model="kws", version=1))
    with pytest.raises(RolloutError, match="METRIC OP EXPR"):
        _start(rollout_db, at, RolloutPlan(model="kws", version=2, gates=("error_rate=1",)))
    _start(rollout_db, at)
    with pytest.raises(RolloutError, match="still in effect"):
        _start(rollout_db, at)


def test_good_version_goes_through_every_stage_and_moves_the_alias(rollout_db, at):
    rollout_db.add_devices(40)
    rid = _start(rollout_db, at)
    assert len(_stage_ids(rollout_db, rid)) == 4  # ceil(10% of 40)
    t = 0
    states = []
    for _ in range(30):
        _follow_director(rollout_db, rid)
        t += 10
        rollout_db.report(at(t))
        _tick(rollout_db, at(t))
        states.append(_row(rollout_db, rid).state)
        if states[-1] == "completed":
            break
    assert states[-1] == "completed", states
    assert "soaking" in states and "running" in states
    with read_session(rollout_db.engine) as s:
        kinds = [e.kind for e in s.scalars(sa.select(RolloutEventRow).order_by(RolloutEventRow.id))]
        history = alias_history(s, "kws", "production")
    assert kinds == ["start", "soak", "advance", "soak", "advance", "soak", "complete"]
    assert history[-1].to_version == 2 and history[-1].actor == "rollout"


def test_bad_version_fails_its_gate_and_every_stage_device_goes_back(rollout_db, at):
    rollout_db.add_devices(40)
    rid = _start(rollout_db, at)
    _follow_director(rollout_db, rid)
    stage = _stage_ids(rollout_db, rid)
    assert all(rollout_db.versions()[d] == 2 for d in stage)
    for t in (10, 20, 30):
        rollout_db.report(at(t), error_rate=0.3)
        _tick(rollout_db, at(t))
    row = _row(rollout_db, rid)
    assert row.state == "failed" and "error_rate<0.02" in row.reason
    # the director now gives the stage the previous version, flagged as a rollback by direct()
    _follow_director(rollout_db, rid)
    assert set(rollout_db.versions().values()) == {1}
    _tick(rollout_db, at(40))
    assert _row(rollout_db, rid).state == "rolled_back"
    with read_session(rollout_db.engine) as s:
        canary = alias_history(s, "kws", "canary")
    assert canary[-1].action == "revert" and canary[-1].to_version == 1
    assert "error_rate<0.02" in canary[-1].reason


def test_one_bad_device_is_caught(rollout_db, at):
    rollout_db.add_devices(60)
    rid = _start(
        rollout_db,
        at,
        RolloutPlan(
            model="kws", version=2, stages=(50.0, 100.0), soak_s=30.0, gates=("error_rate<0.02",)
        ),
    )
    _follow_director(rollout_db, rid)
    stage = _stage_ids(rollout_db, rid)
    for t in (10, 20, 30):
        rollout_db.report(at(t), bad={stage[0]: 0.6})
        _tick(rollout_db, at(t))
    row = _row(rollout_db, rid)
    assert row.state == "failed" and stage[0] in row.reason


def test_restart_resumes_from_the_database(rollout_db, at, tmp_path):
    rollout_db.add_devices(20)
    rid = _start(rollout_db, at)
    _follow_director(rollout_db, rid)
    rollout_db.report(at(10))
    _tick(rollout_db, at(10))
    assert _row(rollout_db, rid).state == "soaking"
    rollout_db.engine.dispose()  # the server process goes away
    rollout_db.engine = make_engine(rollout_db.url)  # ... and a new one starts
    for t in (20, 30, 40, 50):
        rollout_db.report(at(t))
        _tick(rollout_db, at(t))
    row = _row(rollout_db, rid)
    assert (row.state, row.stage) == ("running", 1)


def test_compare_and_set_lets_one_process_win(rollout_db, at):
    from edgeloop.fleet._machine import Transition

    rollout_db.add_devices(10)
    rid = _start(rollout_db, at)
    with write_session(rollout_db.engine) as s:
        row = s.get(RolloutRow, rid)  # this process read revision 0 ...
        s.execute(  # ... then another process paused it (revision 1)
            sa.update(RolloutRow)
            .where(RolloutRow.id == rid)
            .values(state="paused", revision=RolloutRow.revision + 1)
            .execution_options(synchronize_session=False)
        )
        assert row.revision == 0
        assert not rs._apply(s, row, Transition("abort", "aborted", 0, "late"), at(2), "b")
    assert _row(rollout_db, rid).state == "paused"


def test_pause_resume_abort_and_commands_refused(rollout_db, at):
    rollout_db.add_devices(10)
    rid = _start(rollout_db, at)
    with write_session(rollout_db.engine) as s:
        assert rs.act(s, rid, "pause", "look", "me", at(1)).state == "paused"
    with write_session(rollout_db.engine) as s, pytest.raises(RolloutError, match="cannot pause"):
        rs.act(s, rid, "pause", "again", "me", at(2))
    with write_session(rollout_db.engine) as s:
        assert rs.act(s, rid, "resume", "ok", "me", at(3)).state == "running"
        assert rs.act(s, rid, "abort", "stop", "me", at(4)).state == "aborted"
    _follow_director(rollout_db, rid)
    assert set(rollout_db.versions().values()) == {1}


def test_cohort_limits_the_rollout(rollout_db, at):
    arm = rollout_db.add_devices(10, arch="aarch64")
    x86 = rollout_db.add_devices(10, arch="x86_64")
    plan = RolloutPlan(model="kws", version=2, stages=(100.0,), cohort={"arch": "x86_64"})
    rid = _start(rollout_db, at, plan)
    with write_session(rollout_db.engine) as s:
        policy = rs.policy_for(s)
        for ids, want in ((arm, 1), (x86, 2)):
            for device_id in ids:
                from edgeloop.fleet._store import device_state

                device = get_device(s, device_id)
                release, reason = policy(
                    device_state(device), "kws", fleet_state(s, device, "production")
                )
                assert release.version == want, reason
    assert _row(rollout_db, rid).stage_devices == 10


def test_a_tick_planned_before_an_admin_action_is_not_applied(rollout_db, at):
    rollout_db.add_devices(10)
    rid = _start(rollout_db, at)
    _follow_director(rollout_db, rid)
    with read_session(rollout_db.engine) as s:
        plans = rs.plan_ticks(s, at(10))  # would start the soak ...
    assert plans[0].transition is not None and plans[0].transition.state == "soaking"
    with write_session(rollout_db.engine) as s:
        rs.act(s, rid, "pause", "hold on", "admin", at(11))  # ... but an admin paused it first
    with write_session(rollout_db.engine) as s:
        assert rs.apply_ticks(s, plans, at(12)) == []
    assert _row(rollout_db, rid).state == "paused"
