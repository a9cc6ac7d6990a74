"""The auto-heal dashboard view (/dashboard/autoheal) in real headless Chromium: the kill switch
and its pause/resume buttons (CSRF-protected, in the audit log as ``dashboard``), the policy a
worker runs, a model a policy's ``pause`` rule paused (and resuming it), the runs with their
steps, versions and rollout links, the audit log. The worker here is the real one
(``AutohealWorker``) screening real queued jobs; only the heal run's steps are written directly
(a heal itself is tests/e2e/test_autoheal.py)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from edgeloop.artifacts import RolloutPlan
from edgeloop.db import read_session, utcnow, write_session
from edgeloop.fleet import _rollout_store as rs
from edgeloop.fleet import (
    autoheal_actions,
    autoheal_paused_models,
    autoheal_state,
    record_autoheal_step,
    start_autoheal_run,
)
from edgeloop.fleet._monitor_jobs import get_job, queue_job

DRIFT = {"drifted": ["f0"], "metrics": {"drift_psi_max": 0.4}}
POLICY = {
    "rules": [
        {"name": "stop-vision", "match": {"models": ["vision"]}, "action": "pause"},
        {"name": "kws-drift", "match": {"models": ["kws"], "kinds": ["drift"]},
         "action": "heal"},
    ],
    "limits": {"max_runs_per_day": 4, "cooldown_after_failure_s": 1800},
    "rollout": {"stages": [50, 100], "soak_s": 30},
}


def _queue(engine: Any, model: str, cohort: str) -> int:
    with write_session(engine) as s:
        row, _ = queue_job(s, "finetune", model, 1, cohort, reason="drift", now=utcnow(),
                           detail=DRIFT)
        return int(row.id)


def _worker(db: Any, tmp: Path) -> Any:
    from edgeloop.loop import AutohealWorker, FleetAccess, load_policy

    path = tmp / "heal.json"
    path.write_text(json.dumps(POLICY))
    fleet = FleetAccess("http://127.0.0.1:9", "t", db.url, db.data, keys=db.data / "keys",
                        repo=db.data / "tuf")
    return AutohealWorker(load_policy(path), fleet, lambda job: None, name="healer-1")


def _healed_run(db: Any) -> tuple[int, int]:
    """A kws run that registered v2, released it and started its rollout (the steps a heal
    records), as the worker's heal would have."""
    job = _queue(db.engine, "kws", "region=eu")
    now = utcnow()
    with write_session(db.engine) as s:
        rollout = rs.start_rollout(s, RolloutPlan(model="kws", version=2, stages=(50.0, 100.0),
                                                  soak_s=30.0, gates=("error_rate<0.05",)),
                                   alias="production", now=now)
        rid = rollout.id
        assert start_autoheal_run(s, job, "kws", "region=eu", worker="healer-0",
                                  policy="heal.json", now=now - timedelta(seconds=5), lease_s=60)
        for step, out in (("register", {"version": 2, "bundle_bytes": 1234}),
                          ("release", {"deltas": {"kws/2/d.elbd": 99}}), ("rollout", {"id": rid})):
            assert record_autoheal_step(s, job, step, out, worker="healer-0", now=now)
    return job, rid


@pytest.mark.browser
@pytest.mark.slow
def test_autoheal_view_shows_policy_runs_and_pauses_from_the_dashboard(
        rollout_db, live_app, browser, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    db = rollout_db
    job, rid = _healed_run(db)
    vision = _queue(db.engine, "vision", "region=us")
    worker = _worker(db, tmp_path)
    try:
        assert worker.step() is None  # the vision job: the policy pauses the model
        with read_session(db.engine) as s:
            assert set(autoheal_paused_models(s)) == {"vision"}
            assert get_job(s, vision).state == "failed"
        url, token = live_app

        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.goto(url + "/dashboard")
        page.fill("#token", token)
        page.click("#sign-in")
        page.wait_for_selector("#device-total")
        page.click("#nav-autoheal")
        page.wait_for_selector("#autoheal-state")
        assert page.inner_text("#autoheal-state") == "active"
        # the policy the worker runs, with its limits and its file's sha256
        limits = page.inner_text("#policy-limits")
        assert "at most 4 automatic run(s) per model per day" in limits and "30 min" in limits
        policy = page.inner_text("#autoheal-policy")
        assert "heal.json" in policy and worker.policy.sha256[:16] in policy
        assert "stop-vision" in policy and "healer-1" in policy
        # the model the pause rule stopped
        row = page.locator("#paused-models tr[data-model='vision']")
        assert "stop-vision" in row.inner_text() and f"job {vision}" in row.inner_text()
        # the run: its steps, the version it registered, a link to its rollout
        run = page.locator(f"#autoheal-runs tr[data-job='{job}']")
        assert run.locator(".steps").inner_text().startswith("register, release, rollout")
        assert run.locator(".version").inner_text() == "kws@2"
        assert run.locator(f".rollout a[href='/dashboard/rollouts/{rid}']").count() == 1
        assert "pause_model" in page.inner_text("#autoheal-audit")
        page.screenshot(path=str(tmp_path / "autoheal.png"), full_page=True)

        # the kill switch from the dashboard: in the database and the audit log
        page.click("#autoheal-pause")
        page.wait_for_selector("#autoheal-resume")
        assert page.inner_text("#autoheal-state") == "paused"
        with read_session(db.engine) as s:
            st = autoheal_state(s)
            assert st.paused and st.actor == "dashboard"
            assert autoheal_actions(s, limit=1)[0]["action"] == "paused"
        # paused: the worker claims nothing, the queued job stays queued
        waiting = _queue(db.engine, "kws", "region=us")
        assert worker.step() is None
        with read_session(db.engine) as s:
            assert get_job(s, waiting).state == "queued"

        page.click("#autoheal-resume")
        page.wait_for_selector("#autoheal-pause")
        assert page.inner_text("#autoheal-state") == "active"
        page.click("#paused-models tr[data-model='vision'] button.resume-model")
        page.wait_for_selector("#autoheal-pause")
        assert page.locator("#paused-models tr[data-model='vision']").count() == 0
        with read_session(db.engine) as s:
            assert autoheal_paused_models(s) == {}
            last = autoheal_actions(s, model="vision", limit=1)[0]
            assert last["action"] == "resume_model" and last["actor"] == "dashboard"
            assert not autoheal_state(s).paused
    finally:
        worker.close()


def test_autoheal_forms_need_the_csrf_value_and_valid_input(rollout_db, live_app) -> None:  # type: ignore[no-untyped-def]
    url, token = live_app
    with httpx.Client(base_url=url) as c:
        r = c.get("/dashboard/autoheal", follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/dashboard/login"
        c.post("/dashboard/login", data={"token": token}, follow_redirects=False)
        r = c.get("/dashboard/autoheal")
        assert r.status_code == 200 and 'id="autoheal-state">active<' in r.text
        assert c.post("/dashboard/autoheal/pause", data={"csrf": "forged"}).status_code == 403
        csrf = r.text.split('name="csrf" value="')[1].split('"')[0]
        r = c.post("/dashboard/autoheal/explode", data={"csrf": csrf})
        assert r.status_code == 404
        r = c.post("/dashboard/autoheal/pause", data={"csrf": csrf, "model": "a\nb"})
        assert r.status_code == 400 and "model" in r.text
        with read_session(rollout_db.engine) as s:
            assert not autoheal_state(s).paused and autoheal_paused_models(s) == {}
        r = c.post("/dashboard/autoheal/pause", data={"csrf": csrf, "model": "kws"},
                   follow_redirects=False)
        assert r.status_code == 303
        with read_session(rollout_db.engine) as s:
            assert set(autoheal_paused_models(s)) == {"kws"}
