"""Bytes shipped per stage: what devices report downloading to install the rollout's version
(full bundles and deltas), summed per stage on the rollout API and the dashboard."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx

from edgeloop.artifacts import RolloutPlan
from edgeloop.db import ReportRow, RolloutEventRow, read_session, write_session
from edgeloop.fleet import _rollout_store as rs
from edgeloop.fleet._gates import GateOptions

PLAN = RolloutPlan(model="kws", version=2, stages=(10.0, 100.0), soak_s=30.0, gates=())


def _report(db: Any, device_id: str, when: Any, version: int, **metrics: float) -> None:
    with write_session(db.engine) as s:
        s.add(ReportRow(device_id=device_id, received_at=when, model="kws", version=version,
                        window_s=10.0, metrics=dict(metrics), report={}))  # fmt: skip


def _start(db: Any, when: Any) -> int:
    with write_session(db.engine) as s:
        row = rs.start_rollout(s, PLAN, alias="production", now=when, options=GateOptions())
        return int(row.id)


def test_bytes_are_summed_per_stage(rollout_db: Any, at: Any) -> None:
    ids = rollout_db.add_devices(6)
    _report(rollout_db, ids[0], at(-5), 2, bytes_downloaded=999)  # before the rollout
    rid = _start(rollout_db, at(0))
    _report(rollout_db, ids[0], at(10), 2, bytes_downloaded=40_000, delta_bytes_downloaded=40_000,
            delta_updates=1, requests=5)  # fmt: skip
    _report(rollout_db, ids[1], at(12), 2, bytes_downloaded=1_000_000, delta_fallbacks=1)
    _report(rollout_db, ids[1], at(20), 2, requests=10)  # a later window: nothing downloaded
    _report(rollout_db, ids[2], at(15), 1, bytes_downloaded=5)  # the old version: not counted
    with write_session(rollout_db.engine) as s:  # the second stage starts at 100 s
        s.add(
            RolloutEventRow(
                rollout_id=rid, at=at(100), kind="advance", from_state="soaking",
                to_state="running", stage=1, reason="", actor="test", data={},
            )
        )  # fmt: skip
    for i, d in enumerate(ids[2:5]):
        _report(rollout_db, d, at(110 + i), 2, bytes_downloaded=30_000,
                delta_bytes_downloaded=30_000, delta_updates=1)  # fmt: skip
    with read_session(rollout_db.engine) as s:
        shipped = rs.rollout_dict(s, rs.get_rollout(s, rid), detail=True)["shipped"]
    assert shipped == [
        {"stage": 0, "percent": 10.0, "devices": 2, "bytes": 1_040_000, "delta_bytes": 40_000,
         "delta_updates": 1, "delta_fallbacks": 1},
        {"stage": 1, "percent": 100.0, "devices": 3, "bytes": 90_000, "delta_bytes": 90_000,
         "delta_updates": 3, "delta_fallbacks": 0},
    ]  # fmt: skip


def test_the_dashboard_shows_bytes_per_stage(rollout_db: Any, live_app: Any, at: Any) -> None:
    from datetime import datetime, timezone

    ids = rollout_db.add_devices(3)
    now = datetime.now(timezone.utc) - timedelta(seconds=30)
    rid = _start(rollout_db, now)
    _report(rollout_db, ids[0], now + timedelta(seconds=5), 2, bytes_downloaded=1_234_567)
    url, token = live_app
    with httpx.Client(base_url=url) as c:
        c.post("/dashboard/login", data={"token": token})
        page = c.get(f"/dashboard/rollouts/{rid}").text
        api = c.get(f"/v1/admin/rollouts/{rid}", headers={"Authorization": f"Bearer {token}"})
    assert 'id="shipped"' in page and "1,234,567" in page
    assert api.json()["shipped"][0]["bytes"] == 1_234_567
