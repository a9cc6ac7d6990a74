"""Attack 2 of issue 13, the second half: one rollout's bad data cannot stop the others.

A report stored before ingest validated telemetry (negative ``errors``) made the rate gate
raise ``math domain error`` on every tick, which aborted the tick for every rollout. The gates
now clamp counts, but any evaluation can still meet data it cannot read (here a report stored
with ``metrics`` as a JSON list): the failing rollout is logged and gets an ``error`` check, and
the other one still advances.
"""

from __future__ import annotations

import logging

import sqlalchemy as sa

from edgeloop.artifacts import RolloutPlan
from edgeloop.db import (
    DeviceRow,
    ReleaseRow,
    ReportRow,
    RolloutCheckRow,
    RolloutRow,
    VariantRow,
    read_session,
    write_session,
)
from edgeloop.fleet import _rollout_store as rs
from edgeloop.fleet._canary import device_hash
from edgeloop.fleet._gates import GateOptions
from edgeloop.registry import Registry

OPTS = GateOptions(min_devices=3, min_requests=100)


def _second_model(db, at) -> None:
    """Model ``wake`` v1 and v2 published, 20 devices on v1 (``kws`` comes with the fixture)."""
    src = db.data / "wake.onnx"
    src.write_bytes(b"wake v1")
    with Registry(db.url, db.data) as reg:
        reg.push(src, "wake", version=1, alias="production")
        src.write_bytes(b"wake v2")
        reg.push(src, "wake", version=2)
    with write_session(db.engine) as s:
        for v in (1, 2):
            rel = ReleaseRow(model="wake", version=v, published_at=at(0))
            s.add(rel)
            s.flush()
            s.add(
                VariantRow(
                    release_id=rel.id,
                    variant="fp32",
                    target=f"wake/{v}/wake-{v}.elb",
                    sha256=f"{v + 10:064x}",
                    length=100,
                    requires={},
                    fleet_wrap={},
                )
            )
        for i in range(20):
            s.add(
                DeviceRow(
                    id=f"w-{i:03d}",
                    signing_key=f"{1000 + i:064x}",
                    encryption_key="0" * 64,
                    labels={},
                    model="wake",
                    enrolled_at=at(0),
                    last_seen=at(0),
                    profile=None,
                    installed={"model": "wake", "version": 1, "variant": "fp32", "sha256": ""},
                    installed_version=1,
                    health="ok",
                    revoked=False,
                )
            )


def _start(db, at, model: str) -> int:
    plan = RolloutPlan(
        model=model, version=2, stages=(50.0, 100.0), soak_s=10.0, gates=("error_rate<0.05",)
    )
    with write_session(db.engine) as s:
        return rs.start_rollout(
            s, plan, alias="production", now=at(0), options=OPTS, switch_timeout_s=600.0
        ).id


def _stage(db, rid: int) -> list[str]:
    with read_session(db.engine) as s:
        row = s.get(RolloutRow, rid)
        devices = s.scalars(sa.select(DeviceRow.id).where(DeviceRow.model == row.model)).all()
        return [d for d in devices if device_hash(row.salt, d) <= row.cut]


def _reports(db, at, t: int, model: str, version_of, broken=frozenset()) -> None:
    with write_session(db.engine) as s:
        for (device_id,) in s.execute(sa.select(DeviceRow.id).where(DeviceRow.model == model)):
            metrics: object = {"requests": 100, "errors": 0}
            if device_id in broken:
                metrics = [100, 0]  # not an object: what a pre-validation server stored
            s.add(
                ReportRow(
                    device_id=device_id,
                    received_at=at(t),
                    model=model,
                    version=version_of(device_id),
                    window_s=10.0,
                    metrics=metrics,
                    report={"metrics": metrics},
                )
            )


def test_a_rollout_whose_evaluation_raises_does_not_stop_the_others(rollout_db, at, caplog):
    rollout_db.add_devices(20)
    _second_model(rollout_db, at)
    bad, good = _start(rollout_db, at, "kws"), _start(rollout_db, at, "wake")
    bad_stage, good_stage = set(_stage(rollout_db, bad)), set(_stage(rollout_db, good))
    rollout_db.install(sorted(bad_stage), 2)
    with write_session(rollout_db.engine) as s:
        s.execute(
            sa.update(DeviceRow)
            .where(DeviceRow.id.in_(good_stage))
            .values(installed_version=2, installed={"model": "wake", "version": 2})
        )
    poisoned = sorted(bad_stage)[0]
    states = []
    with caplog.at_level(logging.ERROR, logger="edgeloop.fleet.rollout"):
        for t in (5, 10, 20, 30):
            _reports(
                rollout_db,
                at,
                t,
                "kws",
                lambda d: 2 if d in bad_stage else 1,
                {poisoned},
            )
            _reports(rollout_db, at, t, "wake", lambda d: 2 if d in good_stage else 1)
            with write_session(rollout_db.engine) as s:
                rs.drive(s, at(t))
            with read_session(rollout_db.engine) as s:
                states.append((s.get(RolloutRow, bad).state, s.get(RolloutRow, good).state))
    assert states[0] == ("running", "soaking")
    assert states[-1][0] == "running"  # frozen where it was, not failed nor passed
    assert states[-1][1] in ("running", "completed") and any(g != "soaking" for _, g in states[1:])
    with read_session(rollout_db.engine) as s:
        good_row = s.get(RolloutRow, good)
        assert good_row.stage == 1 or good_row.state == "completed"
        errors = s.execute(
            sa.select(RolloutCheckRow.gate, RolloutCheckRow.result).where(
                RolloutCheckRow.rollout_id == bad, RolloutCheckRow.status == "error"
            )
        ).all()
    assert len(errors) == 4
    assert errors[0].gate == rs.EVALUATION_GATE
    assert "evaluation failed: AttributeError" in errors[0].result["reason"]
    assert any(f"rollout {bad}: evaluation failed" in r.getMessage() for r in caplog.records)
