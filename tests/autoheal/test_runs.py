"""Auto-heal runs in the database (migration 0013): one run per cohort at once (the UNIQUE key,
whichever process asks), a dead worker's run taken over once its lease expires (the old worker
can then neither record a step nor finish), and two worker processes racing on one database
never claiming the same job."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from datetime import timedelta
from pathlib import Path

from edgeloop.db import make_engine, read_session, upgrade, utcnow, write_session
from edgeloop.fleet import (
    autoheal_run,
    autoheal_runs,
    claim_autoheal_job,
    end_autoheal_run,
    record_autoheal_step,
    renew_autoheal_lease,
    start_autoheal_run,
    take_over_autoheal_run,
)
from edgeloop.fleet._monitor_jobs import get_job, queue_job

DRIFT = {"drifted": ["f0"], "metrics": {"drift_psi_max": 0.4}}


def _queue(engine, model: str, version: int, cohort: str) -> int:  # type: ignore[no-untyped-def]
    with write_session(engine) as s:
        row, _ = queue_job(s, "finetune", model, version, cohort, reason="drift", now=utcnow(),
                           detail=DRIFT)
        return int(row.id)


def _claim_and_start(engine, worker: str, lease_s: float = 60.0):  # type: ignore[no-untyped-def]
    with write_session(engine) as s:
        now = utcnow()
        job = claim_autoheal_job(s, worker=worker, now=now)
        if job is None:
            return None
        ok = start_autoheal_run(s, job["id"], job["model"], job["cohort"], worker=worker,
                                policy="p.json", now=now, lease_s=lease_s)
        return job["id"], ok


def test_one_run_per_cohort_at_once(db_url: str) -> None:
    upgrade(db_url)
    engine = make_engine(db_url)
    try:
        north1 = _queue(engine, "m", 1, "region=north")
        north2 = _queue(engine, "m", 2, "region=north")  # another version, the same cohort
        south = _queue(engine, "m", 1, "region=south")
        assert _claim_and_start(engine, "a") == (north1, True)
        # the north cohort is busy: b gets the south job, not north2
        assert _claim_and_start(engine, "b") == (south, True)
        assert _claim_and_start(engine, "c") is None
        # the database itself refuses a second running run on north (the UNIQUE key)
        with write_session(engine) as s:
            assert not start_autoheal_run(s, north2, "m", "region=north", worker="x",
                                          policy="p", now=utcnow(), lease_s=60)
        with write_session(engine) as s:
            assert end_autoheal_run(s, north1, "succeeded", {"ok": True}, worker="a",
                                    now=utcnow())
        # north is free again: its next job runs
        assert _claim_and_start(engine, "c") == (north2, True)
        with read_session(engine) as s:
            runs = {r["job_id"]: r for r in autoheal_runs(s)}
            assert runs[north1]["state"] == "succeeded"
            assert runs[north2]["state"] == runs[south]["state"] == "running"
            assert get_job(s, north1).state == "succeeded"
    finally:
        engine.dispose()


def test_a_dead_workers_run_is_taken_over_once_and_the_old_worker_is_locked_out(
        db_url: str) -> None:
    upgrade(db_url)
    engine = make_engine(db_url)
    try:
        job = _queue(engine, "m", 1, "*")
        assert _claim_and_start(engine, "a", lease_s=30) == (job, True)
        with write_session(engine) as s:
            assert record_autoheal_step(s, job, "register", {"version": 2}, worker="a",
                                        now=utcnow())
        with write_session(engine) as s:  # the lease still holds: nothing to take over
            assert take_over_autoheal_run(s, worker="b", now=utcnow(), lease_s=30) is None
        later = utcnow() + timedelta(seconds=31)  # a died: its lease ran out
        with write_session(engine) as s:
            run = take_over_autoheal_run(s, worker="b", now=later, lease_s=30)
        assert run is not None and run["job_id"] == job and run["worker"] == "b"
        assert run["attempts"] == 2 and run["steps"] == {"register": {"version": 2}}
        assert run["job"]["worker"] == "b" and run["job"]["state"] == "running"
        with write_session(engine) as s:  # taken once only
            assert take_over_autoheal_run(s, worker="c", now=later, lease_s=30) is None
        with write_session(engine) as s:  # a woke up: it holds nothing any more
            assert not record_autoheal_step(s, job, "release", {}, worker="a", now=later)
            assert not renew_autoheal_lease(s, job, worker="a", now=later, lease_s=30)
            assert not end_autoheal_run(s, job, "failed", {}, worker="a", now=later)
        with write_session(engine) as s:
            assert renew_autoheal_lease(s, job, worker="b", now=later, lease_s=30)
            assert end_autoheal_run(s, job, "succeeded", {"ok": True}, worker="b", now=later)
        with read_session(engine) as s:
            got = autoheal_run(s, job)
        assert got is not None and got["state"] == "succeeded"
    finally:
        engine.dispose()


_RACER = textwrap.dedent("""
    import json, sys
    from edgeloop.db import make_engine, write_session, utcnow
    from edgeloop.fleet import claim_autoheal_job, start_autoheal_run
    engine = make_engine(sys.argv[1])
    got = []
    for _ in range(40):
        with write_session(engine) as s:
            now = utcnow()
            job = claim_autoheal_job(s, worker=sys.argv[2], now=now)
            if job is None:
                continue
            if start_autoheal_run(s, job["id"], job["model"], job["cohort"],
                                  worker=sys.argv[2], policy="p", now=now, lease_s=600):
                got.append(job["id"])
    print(json.dumps(got))
""")


def test_two_worker_processes_never_claim_the_same_job(db_url: str, tmp_path: Path) -> None:
    upgrade(db_url)
    engine = make_engine(db_url)
    try:
        jobs = {_queue(engine, "m", 1, f"region=r{i}") for i in range(12)}
    finally:
        engine.dispose()
    script = tmp_path / "racer.py"
    script.write_text(_RACER)
    procs = [subprocess.Popen([sys.executable, str(script), db_url, name],
                              stdout=subprocess.PIPE, text=True, env=dict(os.environ))
             for name in ("w1", "w2")]
    got = [json.loads(p.communicate(timeout=120)[0]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    one, two = set(got[0]), set(got[1])
    assert not one & two
    assert one | two == jobs and len(got[0]) + len(got[1]) == len(jobs)
