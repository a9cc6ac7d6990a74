"""The pauses stop new claims, durably: the kill switch (a worker claims nothing while it is
set, the job stays queued) and one model's pause (a policy's ``pause`` rule, or ``edgeloop
autoheal pause --model``): later heals of that model are skipped, by any process, after a
restart, until ``edgeloop autoheal resume --model``. Both are rows in the database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from edgeloop.db import make_engine, read_session, upgrade, utcnow, write_session
from edgeloop.fleet import (
    autoheal_actions,
    autoheal_paused_models,
    set_autoheal_model_paused,
    set_autoheal_paused,
)
from edgeloop.fleet._monitor_jobs import get_job, queue_job

POLICY = {"rules": [{"name": "floor", "match": {"metric": "est_accuracy", "below": 0.5},
                     "action": "pause"},
                    {"name": "drift", "match": {"kinds": ["drift"]}, "action": "heal"}]}
DRIFT = {"drifted": ["f0"], "metrics": {"drift_psi_max": 0.4}}
COLLAPSE = {"drifted": ["f0"], "metrics": {"drift_psi_max": 0.4, "est_accuracy": 0.3}}


def _queue(url: str, model: str, detail: dict[str, Any], cohort: str = "site=a") -> int:
    engine = make_engine(url)
    try:
        with write_session(engine) as s:
            row, _ = queue_job(s, "finetune", model, 1, cohort, reason="alert", now=utcnow(),
                               detail=detail)
            return int(row.id)
    finally:
        engine.dispose()


def _job(url: str, job_id: int) -> Any:
    engine = make_engine(url)
    try:
        with read_session(engine) as s:
            j = get_job(s, job_id)
            return j.state, dict(j.result or {})
    finally:
        engine.dispose()


def _worker(url: str, tmp: Path, name: str) -> Any:
    """A worker as a freshly started server process would make it (its own engine)."""
    from edgeloop.loop import AutohealWorker, FleetAccess, parse_policy

    fleet = FleetAccess("http://127.0.0.1:9", "t", url, tmp, keys=tmp / "keys", repo=tmp / "tuf")

    def no_heal(job: Any) -> Any:
        raise AssertionError(f"job {job['id']} must not be healed")

    return AutohealWorker(parse_policy(POLICY), fleet, no_heal, name=name)


def test_kill_switch_stops_claims_until_resumed(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'k.db'}"
    upgrade(url)
    engine = make_engine(url)
    try:
        with write_session(engine) as s:
            set_autoheal_paused(s, True, actor="ops", reason="recall", now=utcnow())
    finally:
        engine.dispose()
    collapse = _queue(url, "kws", COLLAPSE)
    for name in ("w1", "w2"):  # a restart (a new worker, a new engine) sees the switch too
        w = _worker(url, tmp_path, name)
        try:
            assert w.step() is None
        finally:
            w.close()
        assert _job(url, collapse)[0] == "queued"
    engine = make_engine(url)
    try:
        with write_session(engine) as s:
            set_autoheal_paused(s, False, actor="ops", reason="", now=utcnow())
    finally:
        engine.dispose()
    w = _worker(url, tmp_path, "w3")
    try:
        assert w.step() is None  # claimed now: its decision is the pause rule's
    finally:
        w.close()
    assert _job(url, collapse)[0] == "failed"


def test_a_pause_rule_pauses_the_model_durably_until_resumed(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'p.db'}"
    upgrade(url)
    collapse = _queue(url, "kws", COLLAPSE)
    w = _worker(url, tmp_path, "w1")
    try:
        assert w.step() is None
    finally:
        w.close()
    state, result = _job(url, collapse)
    assert state == "failed" and result["decision"]["action"] == "pause"
    # a drift job of the paused model: the rule says heal, the model's pause refuses it, in a
    # new worker (a restarted server); another model is healed as usual (not here: no heal)
    drift = _queue(url, "kws", DRIFT, cohort="site=b")
    w = _worker(url, tmp_path, "w2")
    try:
        assert w.step() is None
    finally:
        w.close()
    state, result = _job(url, drift)
    assert state == "failed" and result["decision"]["action"] == "skip"
    assert "auto-heal of kws is paused" in result["reason"] and "floor" in result["reason"]
    engine = make_engine(url)
    try:
        with read_session(engine) as s:
            assert list(autoheal_paused_models(s)) == ["kws"]
            acts = [a["action"] for a in autoheal_actions(s, model="kws")]
            assert acts[:2] == ["skipped", "pause_model"] and "started" not in acts
    finally:
        engine.dispose()

    env = dict(os.environ, EDGELOOP_DB=url, COLUMNS="200")
    run = subprocess.run([sys.executable, "-m", "edgeloop", "autoheal", "status"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 0 and "model kws paused" in run.stdout, run.stderr
    run = subprocess.run([sys.executable, "-m", "edgeloop", "autoheal", "resume", "--model",
                          "kws", "--reason", "sensor fixed", "--json"], capture_output=True,
                         text=True, env=env, timeout=120)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["paused_models"] == {} and out["paused"] is False
    engine = make_engine(url)
    try:
        with read_session(engine) as s:
            from edgeloop.loop import admission, parse_policy

            assert admission(s, parse_policy(POLICY), "kws", utcnow()) is None
            last = autoheal_actions(s, model="kws", limit=1)[0]
            assert last["action"] == "resume_model" and last["detail"]["reason"] == "sensor fixed"
        with write_session(engine) as s:  # by hand, and a newer pause wins over an older resume
            set_autoheal_model_paused(s, "kws", True, actor="ops", reason="again", now=utcnow())
        with read_session(engine) as s:
            assert autoheal_paused_models(s)["kws"]["reason"] == "again"
    finally:
        engine.dispose()


class _Healing(Exception):
    pass


def test_a_hand_queued_job_is_healed_under_the_same_limits(tmp_path: Path) -> None:
    """A job a person queued has no alert for the rules: the service heals it (rule
    ``manual``), unless the limits refuse, as they refuse an alert's."""
    from edgeloop.loop import AutohealWorker, FleetAccess, is_hand_queued, parse_policy

    url = f"sqlite:///{tmp_path / 'h.db'}"
    upgrade(url)
    engine = make_engine(url)
    try:
        with write_session(engine) as s:  # as POST /v1/admin/monitor/jobs queues it
            row, _ = queue_job(s, "finetune", "kws", 1, "site=a", reason="customer complaint",
                               now=utcnow(), created_by="ops")
            hand = int(row.id)
    finally:
        engine.dispose()
    # a policy none of whose rules would match it (it names no alert kind)
    policy = parse_policy({"rules": [{"match": {"kinds": ["bias"]}, "action": "heal"}]})
    fleet = FleetAccess("http://127.0.0.1:9", "t", url, tmp_path, keys=tmp_path / "keys",
                        repo=tmp_path / "tuf")
    seen: list[Any] = []

    def cohort(job: Any) -> Any:
        seen.append(job)
        raise _Healing  # the worker went on to heal it: enough here (a heal is the e2e's)

    w = AutohealWorker(policy, fleet, cohort, name="w-hand")
    try:
        with pytest.raises(_Healing):
            w.step()
    finally:
        w.close()
    assert [j["id"] for j in seen] == [hand] and is_hand_queued(seen[0])
    engine = make_engine(url)
    try:
        with read_session(engine) as s:
            started = autoheal_actions(s, model="kws", limit=1)[0]
            assert started["action"] == "started" and started["job_id"] == hand
            assert started["detail"]["rule"] == "manual"
            assert "queued by hand by ops: customer complaint" in started["detail"]["reason"]
        with write_session(engine) as s:
            set_autoheal_model_paused(s, "kws", True, actor="ops", reason="hold", now=utcnow())
            row, _ = queue_job(s, "finetune", "kws", 1, "site=b", reason="again", now=utcnow(),
                               created_by="ops")
            second = int(row.id)
    finally:
        engine.dispose()
    w = AutohealWorker(policy, fleet, cohort, name="w-hand-2")
    try:
        assert w.step() is None
    finally:
        w.close()
    state, result = _job(url, second)
    assert state == "failed" and "auto-heal of kws is paused" in result["reason"]
    assert len(seen) == 1


def test_paused_models_on_both_engines(db_url: str) -> None:
    """The newest pause_model/resume_model row per model is its switch (SQLite, PostgreSQL)."""
    upgrade(db_url)
    engine = make_engine(db_url)
    try:
        with write_session(engine) as s:
            now = utcnow()
            for model, paused in (("a", True), ("b", True), ("a", False), ("c", True),
                                  ("c", False), ("c", True)):
                set_autoheal_model_paused(s, model, paused, actor="ops", reason=f"{model}",
                                          now=now)
        with read_session(engine) as s:
            assert sorted(autoheal_paused_models(s)) == ["b", "c"]
    finally:
        engine.dispose()
