"""The auto-heal kill switch and audit log: tables match migration 0011, the switch is shared
through the database (two engines: two server processes), the CLI flips and reads it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from edgeloop.db import (
    AUTOHEAL_TABLES,
    Base,
    make_engine,
    read_session,
    upgrade,
    utcnow,
    write_session,
)
from edgeloop.errors import InputError
from edgeloop.fleet import (
    autoheal_actions,
    autoheal_state,
    record_autoheal_action,
    set_autoheal_paused,
)


def test_migration_0011_autoheal_matches_the_tables(db_url: str) -> None:
    upgrade(db_url)
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            assert set(sa.inspect(conn).get_table_names()) >= AUTOHEAL_TABLES
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = [d for d in compare_metadata(ctx, Base.metadata)
                    if any(t in repr(d) for t in AUTOHEAL_TABLES)]
        assert diff == []
    finally:
        engine.dispose()


def test_switch_is_shared_between_processes_and_logged(db_url: str) -> None:
    upgrade(db_url)
    one, two = make_engine(db_url), make_engine(db_url)
    try:
        with read_session(two) as s:
            assert autoheal_state(s).paused is False
        with write_session(one) as s:
            set_autoheal_paused(s, True, actor="ops", reason="sensor recall", now=utcnow())
        with read_session(two) as s:
            st = autoheal_state(s)
            assert (st.paused, st.reason, st.actor) == (True, "sensor recall", "ops")
        with write_session(two) as s:
            record_autoheal_action(s, "skipped", actor="server-2", now=utcnow(), model="kws",
                                   cohort="site=a", detail={"why": "paused"})
            set_autoheal_paused(s, False, actor="ops", reason="", now=utcnow())
        with read_session(one) as s:
            assert autoheal_state(s).paused is False
            acts = autoheal_actions(s)
            assert [a["action"] for a in acts] == ["resumed", "skipped", "paused"]
            assert [a["action"] for a in autoheal_actions(s, model="kws")] == ["skipped"]
        with write_session(one) as s, pytest.raises(InputError, match="expected one of"):
            record_autoheal_action(s, "reboot", actor="x", now=utcnow())
        with write_session(one) as s, pytest.raises(InputError, match="one line"):
            set_autoheal_paused(s, True, actor="x", reason="a\nb", now=utcnow())
    finally:
        one.dispose()
        two.dispose()


def _cli(db: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "EDGELOOP_DB": db}
    return subprocess.run([sys.executable, "-m", "edgeloop", "autoheal", *args],
                          capture_output=True, text=True, timeout=120, env=env)


def test_cli_pause_status_resume(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'e.db'}"
    r = _cli(db, "pause", "--reason", "recall")
    assert r.returncode == 0 and "auto-heal paused" in r.stdout, r.stderr
    r = _cli(db, "status", "--json")
    out = json.loads(r.stdout)
    assert out["state"]["paused"] is True and out["actions"][0]["action"] == "paused"
    r = _cli(db, "resume")
    assert r.returncode == 0 and "auto-heal running" in r.stdout, r.stderr
    r = _cli(db, "status", "--limit", "0")
    assert r.returncode != 0 and "--limit 0: expected 1..10000" in r.stderr + r.stdout


def test_admission_reads_switch_rate_and_cooldown_from_the_database(tmp_path: Path) -> None:
    from datetime import timedelta

    from edgeloop.loop import admission, parse_policy

    policy = parse_policy({"rules": [{"action": "heal"}],
                           "limits": {"max_runs_per_day": 2, "cooldown_after_failure_s": 600}})
    url = f"sqlite:///{tmp_path / 'a.db'}"
    upgrade(url)
    engine = make_engine(url)
    now = utcnow()
    try:
        with read_session(engine) as s:
            assert admission(s, policy, "kws", now) is None
        with write_session(engine) as s:
            old = now - timedelta(days=2)
            record_autoheal_action(s, "started", actor="srv", now=old, model="kws")
            record_autoheal_action(s, "started", actor="srv", now=now - timedelta(hours=1),
                                   model="kws")
            record_autoheal_action(s, "started", actor="srv", now=now, model="har")
        with read_session(engine) as s:  # the run two days ago does not count
            assert admission(s, policy, "kws", now) is None
        with write_session(engine) as s:
            record_autoheal_action(s, "started", actor="srv", now=now, model="kws")
        with read_session(engine) as s:
            assert "rate limit" in str(admission(s, policy, "kws", now))
            assert admission(s, policy, "har", now) is None
        with write_session(engine) as s:
            record_autoheal_action(s, "failed", actor="srv", now=now - timedelta(seconds=60),
                                   model="har")
        with read_session(engine) as s:
            assert "cool-down" in str(admission(s, policy, "har", now))
            assert admission(s, policy, "har", now + timedelta(seconds=600)) is None
        with write_session(engine) as s:
            set_autoheal_paused(s, True, actor="ops", reason="", now=now)
        with read_session(engine) as s:
            assert "paused" in str(admission(s, policy, "other", now))
    finally:
        engine.dispose()


def test_screen_job_decides_admits_and_logs(tmp_path: Path) -> None:
    from edgeloop.loop import parse_policy, screen_job

    policy = parse_policy({"rules": [{"match": {"models": ["kws"]}, "action": "heal"},
                                     {"action": "notify"}],
                           "limits": {"max_runs_per_day": 1}})
    url = f"sqlite:///{tmp_path / 's.db'}"
    upgrade(url)
    engine = make_engine(url)
    drift = {"drifted": ["f0"], "metrics": {"drift_psi_max": 0.3}, "quality": []}

    def job(i: int, model: str = "kws", **detail: object) -> dict[str, object]:
        return {"id": i, "model": model, "version": 1, "cohort": "site=a",
                "detail": {**drift, **detail}}

    try:
        now = utcnow()
        with write_session(engine) as s:
            assert screen_job(s, policy, job(1), now, actor="srv").action == "heal"
            broken = screen_job(s, policy, job(2, quality=["f1"]), now, actor="srv")
            assert broken.action == "notify" and "broken inputs" in broken.reason
            limited = screen_job(s, policy, job(3), now, actor="srv")  # 1 run/day: used
            assert limited.action == "skip" and "rate limit" in limited.reason
            assert screen_job(s, policy, job(4, model="har"), now, actor="srv").action == \
                "notify"
        with read_session(engine) as s:
            log = [(a["action"], a["job_id"]) for a in autoheal_actions(s)]
        assert log == [("notify", 4), ("skipped", 3), ("notify", 2), ("started", 1)]
    finally:
        engine.dispose()
