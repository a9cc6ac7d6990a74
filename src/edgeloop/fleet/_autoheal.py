"""Auto-heal's shared state in the database: the kill switch and the log of automatic actions.

Every server process reads the kill switch from the one ``autoheal_state`` row before it starts
an automatic run, so ``edgeloop autoheal pause`` stops all of them; every automatic action (a
run started, skipped, finished; a pause or a notice) and every change of the switch is a row of
``autoheal_actions``, the audit log the dashboard and ``edgeloop autoheal status`` show.

Each automatic run is a row of ``autoheal_runs`` keyed by its ``finetune`` job: the worker
holding it and its lease (renewed while the worker lives), and the heal steps done with their
outputs. :func:`start_autoheal_run` inserts it with the model and cohort as a UNIQUE
``active_key``, so the database refuses a second run on one cohort while one runs, whatever
process asks; :func:`take_over_autoheal_run` hands a run whose lease expired (its worker died)
to another worker, which resumes it from :func:`record_autoheal_step`'s last step.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from edgeloop.db import AutohealActionRow, AutohealRunRow, AutohealStateRow, MonitorJobRow
from edgeloop.errors import InputError
from edgeloop.fleet._monitor_jobs import MAX_RESULT_BYTES, job_dict

__all__ = [
    "AUTOHEAL_ACTIONS",
    "AutohealState",
    "autoheal_actions",
    "autoheal_history",
    "autoheal_paused_models",
    "autoheal_run",
    "autoheal_runs",
    "autoheal_state",
    "claim_autoheal_job",
    "end_autoheal_run",
    "record_autoheal_action",
    "record_autoheal_step",
    "renew_autoheal_lease",
    "set_autoheal_model_paused",
    "set_autoheal_paused",
    "start_autoheal_run",
    "take_over_autoheal_run",
]

AUTOHEAL_ACTIONS = ("paused", "resumed", "queued", "started", "skipped", "succeeded", "failed",
                    "resumed_job", "pause_model", "resume_model", "notify", "notify_failed",
                    "step", "worker_started")
_MODEL_SWITCH = ("pause_model", "resume_model")
_MAX_TEXT = 500


@dataclass(frozen=True)
class AutohealState:
    paused: bool
    reason: str
    actor: str
    updated_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {"paused": self.paused, "reason": self.reason, "actor": self.actor,
                "updated_at": self.updated_at.isoformat()}


def _row(s: Session) -> AutohealStateRow:
    row = s.get(AutohealStateRow, 1)
    if row is None:  # a database the migration created, then someone deleted the row
        raise InputError("autoheal_state has no row: run the migrations again (edgeloop server "
                         "upgrades the database on start)")
    return row


def autoheal_state(s: Session) -> AutohealState:
    row = _row(s)
    return AutohealState(bool(row.paused), row.reason, row.actor, row.updated_at)


def _text(what: str, value: str, limit: int = _MAX_TEXT) -> str:
    if len(value) > limit or any(ord(c) < 32 and c not in "\t" for c in value):
        raise InputError(f"{what} {value[:40]!r}: expected one line of at most {limit} "
                         "characters")
    return value


def set_autoheal_paused(s: Session, paused: bool, *, actor: str, reason: str,
                        now: datetime) -> AutohealState:
    """Pause or resume every server's automatic runs (in the write transaction); logged."""
    row = _row(s)
    row.paused, row.reason = paused, _text("reason", reason)
    row.actor, row.updated_at = _text("actor", actor, 200), now
    record_autoheal_action(s, "paused" if paused else "resumed", actor=actor, now=now,
                           detail={"reason": reason})
    return AutohealState(paused, row.reason, row.actor, now)


def record_autoheal_action(s: Session, action: str, *, actor: str, now: datetime,
                           model: str | None = None, cohort: str | None = None,
                           job_id: int | None = None,
                           detail: dict[str, Any] | None = None) -> int:
    """Append one automatic action to the audit log; its id."""
    if action not in AUTOHEAL_ACTIONS:
        raise InputError(f"auto-heal action {action!r}: expected one of "
                         f"{', '.join(AUTOHEAL_ACTIONS)}")
    row = AutohealActionRow(at=now, actor=_text("actor", actor, 200), action=action,
                            model=model, cohort=cohort, job_id=job_id, detail=detail or {})
    s.add(row)
    s.flush()
    return row.id


def autoheal_actions(s: Session, *, model: str | None = None, action: str | None = None,
                     limit: int = 100) -> list[dict[str, Any]]:
    """The newest actions first (of ``model``, of kind ``action``)."""
    if not 1 <= limit <= 10_000:
        raise InputError(f"limit {limit}: expected 1..10000")
    q = sa.select(AutohealActionRow).order_by(AutohealActionRow.id.desc()).limit(limit)
    if model is not None:
        q = q.where(AutohealActionRow.model == model)
    if action is not None:
        q = q.where(AutohealActionRow.action == action)
    return [{"id": r.id, "at": r.at.isoformat(), "actor": r.actor, "action": r.action,
             "model": r.model, "cohort": r.cohort, "job_id": r.job_id, "detail": r.detail}
            for r in s.scalars(q)]


def set_autoheal_model_paused(s: Session, model: str, paused: bool, *, actor: str, reason: str,
                              now: datetime, job_id: int | None = None,
                              cohort: str | None = None,
                              detail: dict[str, Any] | None = None) -> int:
    """Pause (a policy's ``pause`` action, or a person) or resume one model's automatic runs,
    in the write transaction: a ``pause_model`` or ``resume_model`` row of the audit log, whose
    newest row per model is the model's switch (:func:`autoheal_paused_models`), so the pause
    outlives every process. The new row's id."""
    return record_autoheal_action(
        s, _MODEL_SWITCH[0] if paused else _MODEL_SWITCH[1], actor=actor, now=now,
        model=_text("model", model, 200), cohort=cohort, job_id=job_id,
        detail={**(detail or {}), "reason": _text("reason", reason)})


def autoheal_paused_models(s: Session) -> dict[str, dict[str, Any]]:
    """The models whose automatic runs are paused (their newest ``pause_model`` row has no
    ``resume_model`` after it): model -> when, by whom, why, the job whose alert paused it."""
    newest = (sa.select(AutohealActionRow.model, sa.func.max(AutohealActionRow.id).label("id"))
              .where(AutohealActionRow.action.in_(_MODEL_SWITCH),
                     AutohealActionRow.model.is_not(None))
              .group_by(AutohealActionRow.model).subquery())
    rows = s.scalars(sa.select(AutohealActionRow).join(newest, AutohealActionRow.id == newest.c.id)
                     .where(AutohealActionRow.action == _MODEL_SWITCH[0])
                     .order_by(AutohealActionRow.model))
    return {str(r.model): {"at": _aware(r.at).isoformat(), "actor": r.actor,
                           "reason": str((r.detail or {}).get("reason", "")), "job_id": r.job_id}
            for r in rows}


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo is not None else t.replace(tzinfo=timezone.utc)


def autoheal_history(s: Session, model: str, now: datetime) -> tuple[int, datetime | None]:
    """For the policy's limits: the model's automatic runs started in the 24 hours before
    ``now`` (the audit log's ``started`` rows), and when its last run failed (None: never)."""
    since = now - timedelta(days=1)
    started = s.scalar(sa.select(sa.func.count()).select_from(AutohealActionRow).where(
        AutohealActionRow.model == model, AutohealActionRow.action == "started",
        AutohealActionRow.at > since)) or 0
    failed = s.scalar(sa.select(sa.func.max(AutohealActionRow.at)).where(
        AutohealActionRow.model == model, AutohealActionRow.action == "failed"))
    return int(started), _aware(failed) if failed is not None else None


# --- runs --------------------------------------------------------------------------------

RUN_STATES = ("running", "succeeded", "failed")


def _active_key(model: str, cohort: str) -> str:
    return f"{model}\x1f{cohort}"


def _run_dict(r: AutohealRunRow) -> dict[str, Any]:
    return {"job_id": r.job_id, "model": r.model, "cohort": r.cohort, "state": r.state,
            "worker": r.worker, "lease_until": _aware(r.lease_until).isoformat(),
            "attempts": r.attempts, "policy": r.policy, "steps": dict(r.steps or {}),
            "result": dict(r.result or {}), "started_at": _aware(r.started_at).isoformat(),
            "updated_at": _aware(r.updated_at).isoformat()}


def start_autoheal_run(s: Session, job_id: int, model: str, cohort: str, *, worker: str,
                       policy: str, now: datetime, lease_s: float) -> bool:
    """Insert the run of a claimed job, holding ``model`` and ``cohort`` (in the caller's write
    transaction, inside a savepoint). False when another run of that cohort is running: the
    UNIQUE ``active_key`` refuses it, whichever process raced for it."""
    row = AutohealRunRow(job_id=job_id, model=model, cohort=cohort,
                         active_key=_active_key(model, cohort), state="running",
                         worker=_text("worker", worker, 200),
                         lease_until=now + timedelta(seconds=lease_s), attempts=1,
                         policy=policy[:_MAX_TEXT], steps={}, result={}, started_at=now,
                         updated_at=now)
    try:
        with s.begin_nested():
            s.add(row)
            s.flush()
    except IntegrityError:
        return False
    return True


def claim_autoheal_job(s: Session, *, worker: str, now: datetime) -> dict[str, Any] | None:
    """The oldest queued ``finetune`` job whose model and cohort no run holds, now ``running``
    for ``worker`` (conditional on the state read, as :func:`~edgeloop.fleet.claim_job`); None
    when there is none. The caller then starts its run (:func:`start_autoheal_run`), whose
    UNIQUE key settles a race between two processes for one cohort."""
    busy = sa.select(AutohealRunRow.job_id).where(
        AutohealRunRow.state == "running", AutohealRunRow.model == MonitorJobRow.model,
        AutohealRunRow.cohort == MonitorJobRow.cohort)
    candidates = list(s.scalars(sa.select(MonitorJobRow).where(
        MonitorJobRow.kind == "finetune", MonitorJobRow.state == "queued", ~busy.exists(),
    ).order_by(MonitorJobRow.id).limit(8)))
    for row in candidates:
        done = s.execute(sa.update(MonitorJobRow).where(
            MonitorJobRow.id == row.id, MonitorJobRow.state == "queued",
            MonitorJobRow.attempts == row.attempts,
        ).values(state="running", worker=worker[:200], claimed_at=now, updated_at=now,
                 attempts=row.attempts + 1).execution_options(synchronize_session=False))
        if getattr(done, "rowcount", 0) == 1:
            s.refresh(row)
            return job_dict(row)
    return None


def take_over_autoheal_run(s: Session, *, worker: str, now: datetime,
                           lease_s: float) -> dict[str, Any] | None:
    """The oldest running run whose lease expired (its worker died), now held by ``worker``
    (and its job claimed by it), with its job (``"job"``); None when there is none.
    Conditional on the lease read, so two workers never both take it."""
    stale = list(s.scalars(sa.select(AutohealRunRow).where(
        AutohealRunRow.state == "running", AutohealRunRow.lease_until < now,
    ).order_by(AutohealRunRow.job_id).limit(8)))
    for row in stale:
        done = s.execute(sa.update(AutohealRunRow).where(
            AutohealRunRow.job_id == row.job_id, AutohealRunRow.state == "running",
            AutohealRunRow.worker == row.worker, AutohealRunRow.attempts == row.attempts,
        ).values(worker=worker, lease_until=now + timedelta(seconds=lease_s),
                 attempts=row.attempts + 1, updated_at=now
                 ).execution_options(synchronize_session=False))
        if getattr(done, "rowcount", 0) != 1:
            continue
        s.execute(sa.update(MonitorJobRow).where(MonitorJobRow.id == row.job_id).values(
            state="running", worker=worker[:200], claimed_at=now, updated_at=now,
            attempts=MonitorJobRow.attempts + 1).execution_options(synchronize_session=False))
        s.refresh(row)
        job = s.get(MonitorJobRow, row.job_id)
        assert job is not None  # the run's foreign key
        s.refresh(job)
        return {**_run_dict(row), "job": job_dict(job)}
    return None


def _held(s: Session, job_id: int, worker: str) -> AutohealRunRow | None:
    row = s.get(AutohealRunRow, job_id)
    if row is None or row.state != "running" or row.worker != worker:
        return None
    return row


def renew_autoheal_lease(s: Session, job_id: int, *, worker: str, now: datetime,
                         lease_s: float) -> bool:
    """Extend ``worker``'s lease on its run to ``now + lease_s`` (0: end it now, a worker
    shutting down); False when the run is no longer its own."""
    done = s.execute(sa.update(AutohealRunRow).where(
        AutohealRunRow.job_id == job_id, AutohealRunRow.state == "running",
        AutohealRunRow.worker == worker,
    ).values(lease_until=now + timedelta(seconds=lease_s), updated_at=now
             ).execution_options(synchronize_session=False))
    if getattr(done, "rowcount", 0) != 1:
        return False
    s.execute(sa.update(MonitorJobRow).where(  # the job's own claim stays fresh too
        MonitorJobRow.id == job_id, MonitorJobRow.worker == worker[:200],
        MonitorJobRow.state == "running").values(claimed_at=now, updated_at=now
                                                 ).execution_options(synchronize_session=False))
    return True


def record_autoheal_step(s: Session, job_id: int, step: str, output: dict[str, Any], *,
                         worker: str, now: datetime) -> bool:
    """Record that ``step`` is done with its ``output``; False when the run is no longer
    ``worker``'s (another took it over: stop)."""
    row = _held(s, job_id, worker)
    if row is None:
        return False
    row.steps = {**dict(row.steps or {}), step: output}
    row.updated_at = now
    return True


def end_autoheal_run(s: Session, job_id: int, state: str, result: dict[str, Any], *,
                     worker: str, now: datetime) -> bool:
    """End ``worker``'s run (``succeeded`` or ``failed``), free its cohort and finish its job
    with ``result``; False when the run is no longer ``worker``'s."""
    if state not in RUN_STATES[1:]:
        raise InputError(f"run state {state!r}: expected succeeded or failed")
    if len(json.dumps(result, default=str)) > MAX_RESULT_BYTES:
        result = {"ok": state == "succeeded", "reason": str(result.get("reason", ""))[:1000],
                  "truncated": True}
    row = _held(s, job_id, worker)
    if row is None:
        return False
    row.state, row.result, row.active_key, row.updated_at = state, result, None, now
    job = s.get(MonitorJobRow, job_id)
    if job is not None and job.state == "running":
        job.state, job.result, job.updated_at = state, result, now
    return True


def autoheal_run(s: Session, job_id: int) -> dict[str, Any] | None:
    row = s.get(AutohealRunRow, job_id)
    return None if row is None else _run_dict(row)


def autoheal_runs(s: Session, *, model: str | None = None, limit: int = 50
                  ) -> list[dict[str, Any]]:
    """Runs, newest first, with their steps."""
    if not 1 <= limit <= 10_000:
        raise InputError(f"limit {limit}: expected 1..10000")
    q = sa.select(AutohealRunRow).order_by(AutohealRunRow.started_at.desc(),
                                           AutohealRunRow.job_id.desc()).limit(limit)
    if model is not None:
        q = q.where(AutohealRunRow.model == model)
    return [_run_dict(r) for r in s.scalars(q)]
