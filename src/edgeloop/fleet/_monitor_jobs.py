"""Monitoring jobs: durable work a raised alert asks for, claimed by a worker.

An alert raised on ``model@version`` for a cohort may (``monitor_finetune_jobs``) queue a
``finetune`` job: the model, version and cohort to fine-tune for, the alert event that asked
for it and the alert's summary (drifted features, metrics). A worker (the federated trainer, a
person) claims the oldest queued job of a kind (:func:`claim_job`: ``queued -> running``,
atomically, so two workers never get the same job), does the work and finishes it
(:func:`finish_job`: ``running -> succeeded | failed`` with its result). A running job whose
worker went silent for ``lease_s`` is claimed again (``attempts`` counts the claims). One open
(queued or running) job per kind, model, version and cohort: a re-raised alert does not queue
a second one while the first is open.

The admin API (``/v1/admin/monitor/jobs``), :class:`edgeloop.client.MonitorClient` and
``edgeloop monitor jobs`` sit on these functions.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from edgeloop.db import MonitorJobRow
from edgeloop.fleet._store import Refused

__all__ = [
    "JOB_KINDS",
    "JOB_STATES",
    "claim_job",
    "finish_job",
    "get_job",
    "job_dict",
    "list_jobs",
    "queue_job",
]

JOB_KINDS = ("finetune",)
JOB_STATES = ("queued", "running", "succeeded", "failed")
OPEN = ("queued", "running")
FINISHED = ("succeeded", "failed")
MAX_RESULT_BYTES = 64 * 1024
DEFAULT_LEASE_S = 3600.0
MAX_LEASE_S = 30 * 86400.0  # a claim older than a month is stale whatever was asked
MAX_DB_INT = 2**31 - 1  # job ids and versions are INTEGER columns (32-bit on PostgreSQL)
_MAX_TEXT = 1000


def _check_kind(kind: str) -> None:
    if kind not in JOB_KINDS:
        raise Refused(400, "bad_body", f"job kind {kind!r:.40}: expected one of "
                                       f"{', '.join(JOB_KINDS)}")


def job_dict(row: MonitorJobRow) -> dict[str, Any]:
    def iso(v: datetime | None) -> str | None:
        return v.isoformat() if v is not None else None

    return {"id": row.id, "kind": row.kind, "state": row.state, "model": row.model,
            "version": row.version, "cohort": row.cohort, "event_id": row.event_id,
            "reason": row.reason, "detail": row.detail, "created_by": row.created_by,
            "created_at": iso(row.created_at), "updated_at": iso(row.updated_at),
            "worker": row.worker, "claimed_at": iso(row.claimed_at), "attempts": row.attempts,
            "result": row.result}


def queue_job(s: Session, kind: str, model: str, version: int, cohort: str, *, reason: str,
              now: datetime, detail: dict[str, Any] | None = None, event_id: int | None = None,
              created_by: str = "monitor") -> tuple[MonitorJobRow, bool]:
    """Queue a job (in the caller's write transaction). Returns the row and whether it is new:
    an open job of the same kind, model, version and cohort is returned instead of a second."""
    _check_kind(kind)
    open_row = s.scalars(sa.select(MonitorJobRow).where(
        MonitorJobRow.kind == kind, MonitorJobRow.model == model,
        MonitorJobRow.version == version, MonitorJobRow.cohort == cohort,
        MonitorJobRow.state.in_(OPEN)).order_by(MonitorJobRow.id)).first()
    if open_row is not None:
        return open_row, False
    row = MonitorJobRow(kind=kind, state="queued", model=model, version=version, cohort=cohort,
                        event_id=event_id, reason=reason[:_MAX_TEXT], detail=detail or {},
                        created_by=created_by[:200], created_at=now, updated_at=now,
                        worker=None, claimed_at=None, attempts=0, result={})
    s.add(row)
    s.flush()
    return row, True


def claim_job(s: Session, kind: str, worker: str, now: datetime, *,
              lease_s: float = DEFAULT_LEASE_S) -> MonitorJobRow | None:
    """The oldest queued job of ``kind`` (or a running one whose claim is older than
    ``lease_s``), now ``running`` for ``worker``; None when there is none. The state change is
    conditional on the state read, so two workers racing for a job cannot both get it."""
    _check_kind(kind)
    if not (math.isfinite(lease_s) and 0 < lease_s <= MAX_LEASE_S):
        raise Refused(400, "bad_body", f"lease_s {lease_s!r}: expected seconds > 0 and at most "
                                       f"{MAX_LEASE_S:g}")
    stale = now - timedelta(seconds=lease_s)
    candidates = s.scalars(sa.select(MonitorJobRow).where(
        MonitorJobRow.kind == kind,
        sa.or_(MonitorJobRow.state == "queued",
               sa.and_(MonitorJobRow.state == "running", MonitorJobRow.claimed_at < stale)),
    ).order_by(MonitorJobRow.id).limit(8))
    for row in list(candidates):
        done = s.execute(sa.update(MonitorJobRow).where(
            MonitorJobRow.id == row.id, MonitorJobRow.state == row.state,
            MonitorJobRow.attempts == row.attempts,
        ).values(state="running", worker=worker[:200], claimed_at=now, updated_at=now,
                 attempts=row.attempts + 1).execution_options(synchronize_session=False))
        if getattr(done, "rowcount", 0) == 1:
            s.refresh(row)
            return row
    return None


def get_job(s: Session, job_id: int) -> MonitorJobRow:
    row = s.get(MonitorJobRow, job_id) if 0 <= job_id <= MAX_DB_INT else None
    if row is None:
        raise Refused(404, "not_found", f"no monitoring job {job_id}")
    return row


def finish_job(s: Session, job_id: int, state: str, result: dict[str, Any], now: datetime,
               *, worker: str | None = None) -> MonitorJobRow:
    """``running -> succeeded | failed`` with the worker's ``result`` (a JSON object of at
    most 64 KiB). A job that is not running, or that another worker claimed since, is a 409."""
    if state not in FINISHED:
        raise Refused(400, "bad_body", f"state {state!r:.40}: expected succeeded or failed")
    try:
        size = len(json.dumps(result, allow_nan=False))
    except (TypeError, ValueError) as e:
        raise Refused(400, "bad_body", f"result: expected a JSON object ({e})") from e
    if size > MAX_RESULT_BYTES:
        raise Refused(400, "bad_body", f"result: {size} bytes, expected at most "
                                       f"{MAX_RESULT_BYTES}")
    row = get_job(s, job_id)
    if row.state != "running":
        raise Refused(409, "conflict", f"job {job_id} is {row.state}, not running")
    if worker is not None and row.worker != worker:
        raise Refused(409, "conflict", f"job {job_id} is claimed by {row.worker!r}, not "
                                       f"{worker!r:.200}")
    row.state, row.result, row.updated_at = state, result, now
    return row


def list_jobs(s: Session, *, kind: str | None = None, state: str | None = None,
              model: str | None = None, limit: int = 100) -> list[MonitorJobRow]:
    """Jobs, newest first."""
    if kind is not None:
        _check_kind(kind)
    if state is not None and state not in JOB_STATES:
        raise Refused(400, "bad_query", f"state {state!r:.40}: expected one of "
                                        f"{', '.join(JOB_STATES)}")
    q = sa.select(MonitorJobRow).order_by(MonitorJobRow.id.desc()).limit(max(1, min(limit, 1000)))
    if kind is not None:
        q = q.where(MonitorJobRow.kind == kind)
    if state is not None:
        q = q.where(MonitorJobRow.state == state)
    if model is not None:
        if len(model) > 200 or any(ord(c) < 32 or ord(c) == 127 for c in model):
            raise Refused(400, "bad_query", f"model {model!r:.60}: expected a model name of at "
                                            "most 200 characters")
        q = q.where(MonitorJobRow.model == model)
    return list(s.scalars(q))
