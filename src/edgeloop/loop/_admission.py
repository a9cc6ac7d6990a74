"""Whether the unattended loop may start a run of a model now: the policy's limits applied to
what the database holds (the kill switch, the model's automatic runs in the last 24 hours, its
last failed run), every server process reading the same rows."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from edgeloop.fleet import autoheal_history, autoheal_state
from edgeloop.loop._policy import Policy, check_limits

__all__ = ["admission"]


def admission(s: Session, policy: Policy, model: str, now: datetime) -> str | None:
    """Why a run of ``model`` may not start now (None: it may); see :func:`check_limits`."""
    runs, failed_at = autoheal_history(s, model, now)
    return check_limits(policy, runs_today=runs,
                        last_failure_at=failed_at.timestamp() if failed_at else None,
                        now=now.timestamp(), paused=autoheal_state(s).paused)
