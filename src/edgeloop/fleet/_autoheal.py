"""Auto-heal's shared state in the database: the kill switch and the log of automatic actions.

Every server process reads the kill switch from the one ``autoheal_state`` row before it starts
an automatic run, so ``edgeloop autoheal pause`` stops all of them; every automatic action (a
run started, skipped, finished; a pause or a notice) and every change of the switch is a row of
``autoheal_actions``, the audit log the dashboard and ``edgeloop autoheal status`` show.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from edgeloop.db import AutohealActionRow, AutohealStateRow
from edgeloop.errors import InputError

__all__ = [
    "AUTOHEAL_ACTIONS",
    "AutohealState",
    "autoheal_actions",
    "autoheal_history",
    "autoheal_state",
    "record_autoheal_action",
    "set_autoheal_paused",
]

AUTOHEAL_ACTIONS = ("paused", "resumed", "queued", "started", "skipped", "succeeded", "failed",
                    "resumed_job", "pause_model", "notify", "notify_failed")
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


def autoheal_actions(s: Session, *, model: str | None = None, limit: int = 100
                     ) -> list[dict[str, Any]]:
    """The newest actions first."""
    if not 1 <= limit <= 10_000:
        raise InputError(f"limit {limit}: expected 1..10000")
    q = sa.select(AutohealActionRow).order_by(AutohealActionRow.id.desc()).limit(limit)
    if model is not None:
        q = q.where(AutohealActionRow.model == model)
    return [{"id": r.id, "at": r.at.isoformat(), "actor": r.actor, "action": r.action,
             "model": r.model, "cohort": r.cohort, "job_id": r.job_id, "detail": r.detail}
            for r in s.scalars(q)]


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
