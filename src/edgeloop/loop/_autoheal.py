"""The unattended auto-heal worker: claim ``finetune`` jobs under a policy and heal them, durably.

:class:`AutohealWorker` is what ``edgeloop server --auto-heal POLICY`` runs next to the server.
Each pass (:meth:`AutohealWorker.step`), in one database transaction: nothing while the kill
switch is on; else take over a run whose worker died (its lease expired) and resume it from its
recorded steps; else claim the oldest queued job whose cohort no run holds, screen it with the
policy (:func:`~edgeloop.loop.screen_job`: the rule, broken inputs, the rate limit and the
cool-down) and start its run, the database's UNIQUE key on model and cohort refusing a second
run on one cohort at once. The heal (:func:`~edgeloop.loop.heal`) then records each step done
(registered version, release, rollout id) in the run's row and the audit log; a heartbeat
renews the lease while it runs; the end frees the cohort, finishes the job, is logged, and
told to the policy's webhook.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from edgeloop.errors import FleetError
from edgeloop.loop._admission import screen_job
from edgeloop.loop._federation import stop_federations
from edgeloop.loop._heal import CohortData, FleetAccess, HealPlan, HealResult, heal
from edgeloop.loop._policy import Policy
from edgeloop.loop._webhook import notify_webhook

__all__ = ["AutohealWorker", "LeaseLost"]

DEFAULT_LEASE_S = 60.0


class LeaseLost(FleetError):
    """Another worker took this run over (this one's lease expired): stop without finishing."""


@dataclass
class _Claim:
    job: dict[str, Any]
    steps: dict[str, Any]
    resumed: bool


class _Progress:
    def __init__(self, worker: AutohealWorker, job: Mapping[str, Any],
                 steps: Mapping[str, Any]) -> None:
        self.worker, self.job, self.steps = worker, job, dict(steps)

    def done(self) -> Mapping[str, Mapping[str, Any]]:
        return self.steps

    def record(self, step: str, output: Mapping[str, Any]) -> None:
        from edgeloop.db import utcnow, write_session
        from edgeloop.fleet import record_autoheal_action, record_autoheal_step

        w = self.worker
        if w.closing:
            raise LeaseLost(f"job {self.job['id']}: the worker is shutting down")
        with write_session(w.engine) as s:
            now = utcnow()
            if not record_autoheal_step(s, int(self.job["id"]), step, dict(output),
                                        worker=w.name, now=now):
                raise LeaseLost(f"job {self.job['id']}: run taken over by another worker")
            record_autoheal_action(s, "step", actor=w.name, now=now,
                                   model=str(self.job["model"]),
                                   cohort=str(self.job["cohort"]), job_id=int(self.job["id"]),
                                   detail={"step": step, **dict(output)})
        self.steps[step] = dict(output)


class AutohealWorker:
    """Claims and heals ``finetune`` jobs under ``policy`` (see the module).

    ``cohort_data(job)`` gives the cohort's devices' labelled feedback; ``plan`` overrides the
    policy's heal plan (:meth:`Policy.heal_plan`); ``lease_s`` is how long a silent worker
    keeps its run before another may take it over (renewed every third of it)."""

    def __init__(self, policy: Policy, fleet: FleetAccess,
                 cohort_data: Callable[[Mapping[str, Any]], CohortData], *,
                 name: str = "autoheal", plan: HealPlan | None = None,
                 lease_s: float = DEFAULT_LEASE_S,
                 on_step: Callable[[str, str], None] | None = None) -> None:
        from edgeloop.db import make_engine

        if not 1 <= lease_s <= 86_400:
            raise FleetError(f"lease {lease_s} s: expected 1..86400")
        self.policy, self.fleet, self.cohort_data = policy, fleet, cohort_data
        self.name, self.lease_s, self.on_step = name, lease_s, on_step
        self.plan = plan or policy.heal_plan()
        self.engine = make_engine(fleet.db_url)
        self.current: int | None = None  # the job being healed
        self.closing = False  # abandon(): record, finish and claim nothing more
        self._announced = False

    @property
    def policy_ref(self) -> str:
        """The policy as runs and the audit log name it: its file and the file's sha256."""
        return f"{self.policy.source} sha256:{self.policy.sha256}"

    def policy_summary(self) -> dict[str, Any]:
        """What the audit log's ``worker_started`` row says of this worker's policy (the
        dashboard shows the newest): its file, sha256, rules, budget, gates, rollout and
        limits; of the webhook only its host (a URL may carry a secret)."""
        from urllib.parse import urlsplit

        out = self.policy.to_dict()
        if self.policy.webhook_url:
            out["webhook"] = {"host": urlsplit(self.policy.webhook_url).hostname,
                              "timeout_s": self.policy.webhook_timeout_s}
        return {"policy": self.policy.source, "name": self.policy.name,
                "sha256": self.policy.sha256, "lease_s": self.lease_s, **out}

    def close(self) -> None:
        self.engine.dispose()

    def abandon(self) -> None:
        """Give up the run being healed (a shutdown): its lease ends now, so the next worker
        resumes it from its recorded steps without waiting for the lease to run out. A
        deployed fine-tune's SuperLink is stopped first and its announcement closed (the next
        attempt resumes the Flower run from its checkpoint)."""
        from edgeloop.db import utcnow, write_session
        from edgeloop.fleet import renew_autoheal_lease

        self.closing = True  # the heal's thread may still run: it records nothing more
        job_id = self.current  # before the heal's thread, cut short, forgets it
        stop_federations()
        if job_id is None:
            return
        with write_session(self.engine) as s:
            renew_autoheal_lease(s, job_id, worker=self.name,
                                 now=utcnow() - timedelta(seconds=1), lease_s=0)

    # --- claiming ------------------------------------------------------------------------

    def _claim(self) -> _Claim | None:
        from edgeloop.db import utcnow, write_session
        from edgeloop.fleet import (
            autoheal_state,
            claim_autoheal_job,
            end_autoheal_run,
            record_autoheal_action,
            start_autoheal_run,
            take_over_autoheal_run,
        )

        if self.closing:
            return None
        if not self._announced:  # the policy in force, for the dashboard and the audit
            with write_session(self.engine) as s:
                record_autoheal_action(s, "worker_started", actor=self.name, now=utcnow(),
                                       detail=self.policy_summary())
            self._announced = True
        notices: list[dict[str, Any]] = []
        try:
            with write_session(self.engine) as s:
                now = utcnow()
                if autoheal_state(s).paused:
                    return None
                run = take_over_autoheal_run(s, worker=self.name, now=now,
                                             lease_s=self.lease_s)
                if run is not None:
                    record_autoheal_action(s, "resumed_job", actor=self.name, now=now,
                                           model=run["model"], cohort=run["cohort"],
                                           job_id=run["job_id"],
                                           detail={"steps": sorted(run["steps"]),
                                                   "attempt": run["attempts"]})
                    return _Claim(run["job"], run["steps"], True)
                job = claim_autoheal_job(s, worker=self.name, now=now)
                if job is None:
                    return None
                d = screen_job(s, self.policy, job, now, actor=self.name)
                if d.action != "heal":
                    # not healed: the job ends here, with the decision as its result
                    start_autoheal_run(s, job["id"], job["model"], job["cohort"],
                                       worker=self.name, policy=self.policy_ref, now=now,
                                       lease_s=self.lease_s)
                    end_autoheal_run(s, job["id"], "failed",
                                     {"ok": False, "decision": d.to_dict(),
                                      "reason": f"{d.action}: {d.reason}"},
                                     worker=self.name, now=now)
                    notices.append({"action": d.action, "job": job, "decision": d.to_dict()})
                elif not start_autoheal_run(s, job["id"], job["model"], job["cohort"],
                                            worker=self.name, policy=self.policy_ref,
                                            now=now, lease_s=self.lease_s):
                    raise _Busy  # another process started a run of this cohort: roll back
                else:
                    return _Claim(job, {}, False)
        except _Busy:
            return None
        for n in notices:
            self._notify(n)
        return None

    def _notify(self, event: Mapping[str, Any]) -> None:
        from edgeloop.db import utcnow, write_session
        from edgeloop.fleet import record_autoheal_action

        why = notify_webhook(self.policy, event)
        if why is not None:
            job = event.get("job") or {}
            with write_session(self.engine) as s:
                record_autoheal_action(s, "notify_failed", actor=self.name, now=utcnow(),
                                       model=job.get("model"), cohort=job.get("cohort"),
                                       job_id=job.get("id"), detail={"error": why})

    # --- running -------------------------------------------------------------------------

    def _heartbeat(self, job_id: int, stop: threading.Event, lost: threading.Event) -> None:
        from edgeloop.db import utcnow, write_session
        from edgeloop.fleet import renew_autoheal_lease

        while not stop.wait(self.lease_s / 3):
            try:
                with write_session(self.engine) as s:
                    ok = renew_autoheal_lease(s, job_id, worker=self.name, now=utcnow(),
                                              lease_s=self.lease_s)
            except Exception:  # a database hiccup: try again next beat
                continue
            if not ok:
                lost.set()
                return

    def _finish(self, res: HealResult) -> None:
        from edgeloop.db import utcnow, write_session
        from edgeloop.fleet import end_autoheal_run, record_autoheal_action

        state = "succeeded" if res.ok else "failed"
        if self.closing:  # a heal cut short by the shutdown: the next worker resumes it
            raise LeaseLost(f"job {res.job_id}: the worker is shutting down")
        with write_session(self.engine) as s:
            now = utcnow()
            if not end_autoheal_run(s, res.job_id, state, res.to_dict(), worker=self.name,
                                    now=now):
                raise LeaseLost(f"job {res.job_id}: run taken over by another worker")
            record_autoheal_action(s, state, actor=self.name, now=now, model=res.model,
                                   cohort=res.cohort, job_id=res.job_id,
                                   detail={"version": res.version, "reason": res.reason,
                                           "rollout": (res.rollout or {}).get("id"),
                                           "policy": self.policy_ref})

    def step(self) -> HealResult | None:
        """One pass: resume or claim one job and heal it; None when there was nothing to do."""
        claim = self._claim()
        if claim is None:
            return None
        job = claim.job
        stop, lost = threading.Event(), threading.Event()
        beat = threading.Thread(target=self._heartbeat, args=(int(job["id"]), stop, lost),
                                name=f"autoheal-lease-{job['id']}", daemon=True)
        beat.start()
        self.current = int(job["id"])
        try:
            res = heal(job, self.fleet, self.cohort_data(job), self.plan, worker=self.name,
                       on_step=self.on_step, progress=_Progress(self, job, claim.steps),
                       finish=self._finish)
        except LeaseLost:
            return None
        finally:
            self.current = None
            stop.set()
            beat.join(timeout=5)
        self._notify({"action": "healed" if res.ok else "heal_failed", "job": job,
                      "result": res.to_dict(), "resumed": claim.resumed})
        return res

    def run(self, stop: threading.Event, *, idle_s: float = 5.0,
            on_result: Callable[[HealResult], None] | None = None,
            on_error: Callable[[Exception], None] | None = None) -> None:
        """Pass after pass until ``stop`` is set; an error is reported and the loop goes on
        (the run it hit is finished failed, or resumed once its lease expires)."""
        while not stop.is_set():
            try:
                res = self.step()
            except Exception as e:
                res = None
                if on_error is not None:
                    on_error(e)
            if res is not None:
                if on_result is not None:
                    on_result(res)
                continue
            stop.wait(idle_s)


class _Busy(Exception):
    pass
