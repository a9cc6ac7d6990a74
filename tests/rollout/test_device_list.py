"""The dashboard's device list: SQL-side filters, counts by state and pages; the overview's
health card and the rows agree; durations in human units; bad filters are a 400."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import httpx
import pytest
import sqlalchemy as sa

from edgeloop.artifacts import RolloutPlan
from edgeloop.db import DeviceRow, read_session, write_session
from edgeloop.fleet import _rollout_store as rs
from edgeloop.fleet._inventory import (
    DeviceQuery,
    device_page,
    fleet_counts,
    human_duration,
    state_of,
)

STALE = timedelta(seconds=90)


def _fleet(db):
    """30 arm devices in eu, 10 x86 in us; some seen now, one revoked, one failing."""
    now = datetime.now(timezone.utc)
    arm = db.add_devices(30, region="eu")
    x86 = db.add_devices(10, arch="x86_64", region="us")
    db.install(x86[:4], 2)
    with write_session(db.engine) as s:
        s.execute(
            sa.update(DeviceRow)
            .where(DeviceRow.id.in_(arm[:12] + x86))
            .values(last_seen=now - timedelta(seconds=20))
        )
        s.execute(sa.update(DeviceRow).where(DeviceRow.id == x86[0]).values(health="failing"))
        s.execute(sa.update(DeviceRow).where(DeviceRow.id == arm[0]).values(revoked=True))
    return now, arm, x86


def _page(db, now, **params):
    with read_session(db.engine) as s:
        return device_page(s, DeviceQuery.from_params(params), now, STALE)


def test_filters_counts_and_pages_are_done_by_the_database(rollout_db):
    now, arm, x86 = _fleet(rollout_db)
    with read_session(rollout_db.engine) as s:
        counts = fleet_counts(s, now, STALE)
        rows = {d.id: state_of(d, now, STALE) for d in s.scalars(sa.select(DeviceRow))}
    assert counts["total"] == 40
    assert dict(counts["state"]) == {"ok": 20, "failing": 1, "offline": 18, "revoked": 1}
    assert dict(counts["version"]) == {"kws@1": 36, "kws@2": 4}
    assert dict(counts["hardware"]) == {"rpi4": 30, "n100": 10}
    # the health card and the rows use one rule: count the rows by their state
    assert {k: list(rows.values()).count(k) for k in set(rows.values())} == dict(counts["state"])
    p = _page(rollout_db, now, state="offline", per_page="5", page="2")
    assert (p.matched, p.pages, p.page, len(p.rows)) == (18, 4, 2, 5)
    assert all(r["state"] == "offline" for r in p.rows)
    assert [r["device_id"] for r in p.rows] == sorted(r["device_id"] for r in p.rows)
    assert _page(rollout_db, now, version="kws@2").matched == 4
    assert _page(rollout_db, now, version="kws@2", state="failing").rows[0]["device_id"] == x86[0]
    assert _page(rollout_db, now, hardware="n100", label="region=us").matched == 10
    assert _page(rollout_db, now, label="region=mars").matched == 0
    assert _page(rollout_db, now, seen="<1m").matched == 22
    assert _page(rollout_db, now, seen=">1h").matched == 18
    last = _page(rollout_db, now, per_page="7", page="99")  # past the end: the last page
    assert (last.page, len(last.rows)) == (6, 40 - 5 * 7)


def test_durations_are_in_human_units():
    assert human_duration(3.1536e7) == "365 d" and human_duration(86400 * 1000) == "1000 d"
    assert human_duration(86400 * 2.8314) == "2.83 d"
    assert human_duration(600) == "10 min"
    assert human_duration(45) == "45 s"
    assert human_duration(5400) == "90 min" and human_duration(9000) == "2.5 h"
    assert human_duration(0.012) == "12 ms"
    assert human_duration(float("inf")) == "-" and human_duration("x") == "-"


def _sign_in(c, token):
    r = c.post("/dashboard/login", data={"token": token}, follow_redirects=False)
    assert r.status_code == 303


@pytest.mark.slow
def test_device_list_pages_and_the_overview_agree(rollout_db, live_app):
    now, arm, x86 = _fleet(rollout_db)
    with write_session(rollout_db.engine) as s:
        rs.start_rollout(
            s,
            RolloutPlan(model="kws", version=2, stages=(10.0, 100.0), soak_s=86400.0 * 365),
            alias="production",
            now=now,
        )
    url, token = live_app
    with httpx.Client(base_url=url) as c:
        _sign_in(c, token)
        overview = c.get("/dashboard").text
        card = dict(
            re.findall(
                r'<td class="health (\w+)"><a[^>]*>\w+</a></td><td class="num">(\d+)</td>', overview
            )
        )
        # the live app polls every 2 s: 6 s stale; the devices seen 20 s ago are offline there
        assert card == {"offline": "39", "revoked": "1"}, card
        shown = re.findall(r'<tr data-state="(\w+)">', overview)
        assert len(shown) == 40 and shown.count("offline") == 39  # rows agree with the card
        r = c.get("/dashboard/devices", params={"state": "offline", "per_page": 10, "page": 2})
        assert r.status_code == 200
        assert re.findall(r'<tr data-state="(\w+)">', r.text) == ["offline"] * 10
        assert "39 device(s) match; page 2 of 4" in r.text
        assert 'id="next"' in r.text and 'id="prev"' in r.text
        assert re.search(r"\d+(\.\d+)? (s|min|h|d) ago", r.text)
        r = c.get("/dashboard/devices", params={"version": "kws@2", "hardware": "n100"})
        assert "4 device(s) match" in r.text
        for params, named in [
            ({"state": "happy"}, "state 'happy'"),
            ({"seen": "yesterday"}, "seen 'yesterday'"),
            ({"per_page": "100000"}, "per_page"),
            ({"version": "kws@x"}, "version 'kws@x'"),
            # PostgreSQL refuses NUL in text: a 400 before any query, not a 500
            ({"hardware": "n1\x0000"}, "hardware 'n1\\x0000': expected text without"),
            ({"label": "region=\x00"}, "label"),
        ]:
            bad = c.get("/dashboard/devices", params=params)
            assert bad.status_code == 400 and named in bad.json()["detail"], bad.text
        page = c.get("/dashboard/rollouts/1").text
        assert "soak 365 d" in page and "e+07" not in page


def test_the_queries_run_on_every_engine(db_url):
    """The JSON filters, the state CASE and the GROUP BY on SQLite and PostgreSQL alike."""
    from edgeloop.db import make_engine, upgrade

    upgrade(db_url)
    engine = make_engine(db_url)
    now = datetime.now(timezone.utc)
    try:
        with write_session(engine) as s:
            for i in range(12):
                s.add(
                    DeviceRow(
                        id=f"e-{i:03d}",
                        signing_key=f"{i:064x}",
                        encryption_key="0" * 64,
                        labels={"region": "eu" if i % 2 else "us"},
                        model="kws",
                        enrolled_at=now,
                        last_seen=now if i < 8 else now - timedelta(days=2),
                        profile={"name": "rpi4" if i % 3 else "n100", "arch": "aarch64"},
                        installed={"model": "kws", "version": 1 + i % 2},
                        installed_version=1 + i % 2,
                        health="ok" if i != 1 else "degraded",
                        revoked=i == 11,
                    )
                )
        with read_session(engine) as s:
            counts = fleet_counts(s, now, STALE)
            assert dict(counts["state"]) == {"ok": 7, "degraded": 1, "offline": 3, "revoked": 1}
            assert dict(counts["version"]) == {"kws@1": 6, "kws@2": 6}
            assert dict(counts["hardware"]) == {"rpi4": 8, "n100": 4}

            def matched(**params):
                return device_page(s, DeviceQuery.from_params(params), now, STALE).matched

            assert matched(version="kws@2", label="region=eu") == 6
            assert matched(hardware="n100", state="ok") == 3  # 0, 3, 6 (9 is offline)
            assert matched(seen=">1d") == 4 and matched(seen="<1h", state="degraded") == 1
            p = device_page(s, DeviceQuery(per_page=5, page=3), now, STALE)
            assert [r["device_id"] for r in p.rows] == ["e-010", "e-011"]
            assert p.rows[-1]["state"] == "revoked"
    finally:
        engine.dispose()
