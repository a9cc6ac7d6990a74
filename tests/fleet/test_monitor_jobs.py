"""Alert actions beyond pausing: a raised alert rolls back a rollout to the alerting version
and queues a durable fine-tuning job per alerting cohort, which a worker lists, claims and
finishes through the admin API (``/v1/admin/monitor/jobs``) and ``MonitorClient``."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from classifier_model import reference
from edgeloop.db import make_engine, upgrade, write_session
from edgeloop.fleet import FleetSettings, create_app
from edgeloop.fleet._http import utc_now
from edgeloop.fleet._monitor_jobs import claim_job, finish_job, queue_job
from edgeloop.fleet._store import Refused
from edgeloop.monitor.sketch import MonitorReference

from .conftest import Device, Fleet
from .test_monitor_server import evaluate, publish, report, window


@pytest.fixture(scope="module")
def ref() -> MonitorReference:
    return reference()


def _fleet(tmp_path: Path, db_url: str, **monitor: Any) -> Iterator[Fleet]:
    settings = FleetSettings(
        db_url=db_url, data_dir=tmp_path / "data", poll_interval_s=30.0, monitor_interval_s=0,
        monitor_raise_after=2, monitor_clear_after=2, create_release_keys=True, **monitor,
    )
    with TestClient(create_app(settings)) as client:
        yield Fleet(settings, client, tmp_path)


@pytest.fixture
def jfleet(tmp_path: Path, db_url: str) -> Iterator[Fleet]:
    """Alerts queue fine-tuning jobs and roll back rollouts to the alerting version."""
    yield from _fleet(tmp_path, db_url, monitor_finetune_jobs=True, monitor_rollback=True,
                      monitor_pause_rollouts=True)


def _devices(fleet: Fleet, version: int) -> tuple[list[Device], list[Device]]:
    north = [fleet.device(labels={"region": "north"}) for _ in range(2)]
    south = [fleet.device(labels={"region": "south"}) for _ in range(6)]
    for dev in (*north, *south):
        assert dev.checkin({"model": "clf", "version": version, "variant": "fp32",
                            "sha256": "0" * 64}).status_code == 200
    return north, south


def _windows(fleet: Fleet, ref: MonitorReference, version: int, north: list[Device],
             south: list[Device], rounds: int, seed: int, shift: float = 1.0
             ) -> list[dict[str, dict[str, Any]]]:
    seeds = iter(range(seed, seed + 1000))
    out = []
    for _ in range(rounds):
        for dev in north:
            r = report(dev, version, window(ref, 400, next(seeds), shift=shift))
            assert r.status_code == 202, r.text
        for dev in south:
            assert report(dev, version, window(ref, 400, next(seeds))).status_code == 202
        out.append(evaluate(fleet))
    return out


def _jobs(fleet: Fleet, **query: Any) -> list[dict[str, Any]]:
    r = fleet.client.get("/v1/admin/monitor/jobs", params=query, headers=fleet.admin)
    assert r.status_code == 200, r.text
    return list(r.json()["jobs"])


def _post(fleet: Fleet, path: str, body: Any) -> Any:
    return fleet.client.post(f"/v1/admin/monitor/{path}", json=body, headers=fleet.admin)


def test_an_alert_queues_one_finetune_job_for_its_cohort_which_a_worker_claims_and_finishes(
    jfleet, ref
):
    publish(jfleet, 1, ref)
    north, south = _devices(jfleet, 1)
    first, second = _windows(jfleet, ref, 1, north, south, rounds=2, seed=0)
    assert second["region=north"]["event"] == "raised"
    jobs = _jobs(jfleet)
    # one job, for the drifting cohort (a fleet-wide alarm it explains queues none of its own)
    assert [(j["kind"], j["state"], j["model"], j["version"], j["cohort"]) for j in jobs] == [
        ("finetune", "queued", "clf", 1, "region=north")]
    job = jobs[0]
    assert job["event_id"] == second["region=north"]["event_id"] is not None
    assert "x0" in job["detail"]["drifted"] and "region=north" in job["reason"]
    assert f"queued finetune job {job['id']}" in second["region=north"]["actions"]
    # the stored alert event records the action taken
    status = jfleet.client.get("/v1/admin/monitor/status", headers=jfleet.admin).json()
    raised = [e for e in status["events"] if e["cohort"] == "region=north"]
    assert raised[0]["detail"]["actions"] == second["region=north"]["actions"]
    # the dashboard lists it
    r = jfleet.client.post("/dashboard/login", data={"token": jfleet.admin_token},
                           follow_redirects=False)
    assert r.status_code == 303
    page = jfleet.client.get("/dashboard").text
    table = page[page.index('id="monitor-jobs"'):page.index('id="rollouts"')]
    assert "region=north" in table and "queued" in table and "finetune" in table
    # while it is open, asking again for the same model, version and cohort gives it back
    r = _post(jfleet, "jobs", {"model": "clf", "version": 1, "cohort": "region=north"})
    assert r.status_code == 201 and r.json() == {"job": job, "created": False}
    assert len(_jobs(jfleet)) == 1
    # a worker claims it (running, attempt 1); nobody else gets it
    r = _post(jfleet, "jobs/claim", {"kind": "finetune", "worker": "trainer-1"})
    assert r.status_code == 200, r.text
    claimed = r.json()["job"]
    assert (claimed["id"], claimed["state"], claimed["worker"], claimed["attempts"]) == (
        job["id"], "running", "trainer-1", 1)
    assert _post(jfleet, "jobs/claim", {"worker": "trainer-2"}).json() == {"job": None}
    # only its worker finishes it, once
    r = _post(jfleet, f"jobs/{job['id']}/finish", {"state": "succeeded", "worker": "trainer-2"})
    assert r.status_code == 409 and "trainer-1" in r.json()["detail"]
    r = _post(jfleet, f"jobs/{job['id']}/finish",
              {"state": "succeeded", "result": {"version": 2, "accuracy": 0.93}})
    assert r.status_code == 200, r.text
    assert (r.json()["job"]["state"], r.json()["job"]["result"]) == (
        "succeeded", {"version": 2, "accuracy": 0.93})
    r = _post(jfleet, f"jobs/{job['id']}/finish", {"state": "failed"})
    assert r.status_code == 409 and "succeeded, not running" in r.json()["detail"]
    assert [j["state"] for j in _jobs(jfleet, state="succeeded")] == ["succeeded"]
    assert _jobs(jfleet, state="queued") == []
    # a finished job does not block the next one for the cohort
    r = _post(jfleet, "jobs", {"model": "clf", "version": 1, "cohort": "region=north",
                               "reason": "tune again"})
    assert r.status_code == 201 and r.json()["created"] is True
    assert [(j["state"], j["reason"]) for j in _jobs(jfleet)] == [
        ("queued", "tune again"), ("succeeded", job["reason"])]


def test_an_alert_on_the_new_version_rolls_its_rollout_back(jfleet, ref):
    publish(jfleet, 1, ref)
    publish(jfleet, 2, ref)
    north, south = _devices(jfleet, 1)
    r = jfleet.client.put("/v1/admin/models/clf/desired", json={"version": 1},
                          headers=jfleet.admin)
    assert r.status_code == 200, r.text
    r = jfleet.client.post("/v1/admin/rollouts", headers=jfleet.admin,
                           json={"model": "clf", "version": 2, "stages": [10, 100],
                                 "soak_s": 3600})
    assert r.status_code == 201, r.text
    rollout = r.json()["id"]
    # the devices that took v2 drift on it
    _first, second = _windows(jfleet, ref, 2, north, south, rounds=2, seed=0)
    assert second["region=north"]["event"] == "raised"
    assert f"rolled back rollout {rollout}" in second["region=north"]["actions"]
    assert not any("paused" in a for a in second["region=north"]["actions"])
    r = jfleet.client.get(f"/v1/admin/rollouts/{rollout}", headers=jfleet.admin).json()
    assert r["state"] in ("failed", "rolled_back") and "region=north" in r["reason"]


def test_without_the_settings_an_alert_queues_nothing(tmp_path, db_url, ref):
    for fleet in _fleet(tmp_path, db_url, monitor_pause_rollouts=True):
        publish(fleet, 1, ref)
        north, south = _devices(fleet, 1)
        _first, second = _windows(fleet, ref, 1, north, south, rounds=2, seed=0)
        assert second["region=north"]["event"] == "raised"
        assert second["region=north"]["actions"] == []
        assert _jobs(fleet) == []


@pytest.mark.parametrize(
    ("path", "body", "status", "says"),
    [
        ("jobs/claim", {"kind": "retrain", "worker": "w"}, 400, "job kind 'retrain'"),
        ("jobs/claim", {"worker": ""}, 400, "worker ''"),
        ("jobs/claim", {}, 400, "worker: required"),
        ("jobs/claim", {"worker": "w", "lease_s": -1}, 400, "lease_s -1"),
        ("jobs/claim", {"worker": "w", "lease_s": True}, 400, "lease_s True"),
        ("jobs/claim", {"worker": "w" * 201}, 400, "at most 200"),
        ("jobs/claim", [1], 400, "expected a JSON object"),
        ("jobs", {"model": "clf", "version": -1}, 400, "version -1"),
        ("jobs", {"model": "clf", "version": "1"}, 400, "version '1'"),
        ("jobs", {"model": "clf", "version": 1, "cohort": "north"}, 400, "LABEL=VALUE"),
        ("jobs/1/finish", {"state": "done"}, 400, "expected succeeded or failed"),
        ("jobs/1/finish", {"state": "failed", "result": [1]}, 400, "result [1]"),
        ("jobs/1/finish", {"state": "failed", "result": {"x": "y" * 70_000}}, 400,
         "at most 65536"),
        ("jobs/99/finish", {"state": "failed"}, 404, "no monitoring job 99"),
        # past what the database's INTEGER columns and a datetime hold: 400/404, not a 500
        ("jobs", {"model": "clf", "version": 2**31}, 400, "version 2147483648"),
        ("jobs", {"model": "clf", "version": 10**30}, 400, "expected an int from 0"),
        ("jobs/claim", {"worker": "w", "lease_s": 1e12}, 400, "lease_s 1000000000000.0"),
        ("jobs/claim", {"worker": "w", "lease_s": 10**400}, 400, "at most 2.592e+06"),
        (f"jobs/{2**63}/finish", {"state": "failed"}, 404, f"no monitoring job {2**63}"),
        ("jobs", {"model": "clf\x00", "version": 1}, 400, "(no NUL)"),
    ],
)
def test_hostile_job_requests_are_refused_with_the_reason(jfleet, path, body, status, says):
    r = _post(jfleet, "jobs", {"model": "clf", "version": 1, "cohort": "region=north"})
    assert r.status_code == 201 and r.json()["created"] is True, r.text
    r = _post(jfleet, path, body)
    assert r.status_code == status and says in r.json()["detail"], r.text
    assert [j["state"] for j in _jobs(jfleet)] == ["queued"]


def test_job_listing_validates_its_query_and_needs_the_admin_token(jfleet):
    for query, says in (({"state": "done"}, "state 'done'"), ({"kind": "x"}, "job kind 'x'"),
                        ({"model": "clf\x00"}, "model 'clf\\x00'")):
        r = jfleet.client.get("/v1/admin/monitor/jobs", params=query, headers=jfleet.admin)
        assert r.status_code == 400 and says in r.json()["detail"], r.text
    r = jfleet.client.get(f"/v1/admin/monitor/jobs/{2**63}", headers=jfleet.admin)
    assert r.status_code == 404, r.text
    r = jfleet.client.get("/v1/admin/monitor/jobs")
    assert r.status_code == 401
    r = jfleet.client.post("/v1/admin/monitor/jobs/claim", json={"worker": "w"})
    assert r.status_code == 401


def test_a_claim_whose_worker_went_silent_is_claimed_again_after_its_lease(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'jobs.db'}")
    upgrade(engine)
    t0 = utc_now()
    try:
        with write_session(engine) as s:
            job, new = queue_job(s, "finetune", "clf", 1, "region=north", reason="r", now=t0)
            assert new
            first = claim_job(s, "finetune", "w1", t0, lease_s=60)
            assert first is not None and first.id == job.id and first.attempts == 1
            assert claim_job(s, "finetune", "w2", t0 + timedelta(seconds=59), lease_s=60) is None
            again = claim_job(s, "finetune", "w2", t0 + timedelta(seconds=61), lease_s=60)
            assert again is not None and (again.worker, again.attempts) == ("w2", 2)
            with pytest.raises(Refused, match="claimed by 'w2'"):
                finish_job(s, job.id, "failed", {}, t0, worker="w1")
            done = finish_job(s, job.id, "failed", {"error": "diverged"}, t0, worker="w2")
            assert done.state == "failed"
            # a job of another kind is never handed out for this one
            with pytest.raises(Refused, match="job kind"):
                claim_job(s, "retrain", "w3", t0)
    finally:
        engine.dispose()
