"""Whether the unattended loop may start a run of a model now: the policy's limits applied to
what the database holds (the kill switch, the model's automatic runs in the last 24 hours, its
last failed run), every server process reading the same rows."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from edgeloop.fleet import (
    autoheal_history,
    autoheal_paused_models,
    autoheal_state,
    record_autoheal_action,
    set_autoheal_model_paused,
)
from edgeloop.loop._policy import Decision, Policy, check_limits, decide

__all__ = ["admission", "is_hand_queued", "screen_job"]


def admission(s: Session, policy: Policy, model: str, now: datetime) -> str | None:
    """Why a run of ``model`` may not start now (None: it may): the model's own pause (a
    policy's ``pause`` rule, or ``edgeloop autoheal pause --model``), then
    :func:`check_limits`."""
    held = autoheal_paused_models(s).get(model)
    if held is not None:
        return (f"auto-heal of {model} is paused since {held['at']} by {held['actor']}: "
                f"{held['reason']} (edgeloop autoheal resume --model {model})")
    runs, failed_at = autoheal_history(s, model, now)
    return check_limits(policy, runs_today=runs,
                        last_failure_at=failed_at.timestamp() if failed_at else None,
                        now=now.timestamp(), paused=autoheal_state(s).paused)


MANUAL_RULE = "manual"


def is_hand_queued(job: Mapping[str, Any]) -> bool:
    """A job a person queued (``POST /v1/admin/monitor/jobs``, ``MonitorClient.queue_job``):
    no alert event and no alert summary behind it."""
    return job.get("event_id") is None and not job.get("detail")


def screen_job(s: Session, policy: Policy, job: Mapping[str, Any], now: datetime, *,
               actor: str) -> Decision:
    """What the unattended loop does with a claimed ``finetune`` job (its ``detail`` is the
    alert's summary): the policy's decision, turned into ``skip`` when the decision is ``heal``
    but :func:`admission` refuses; logged in the audit log (``started`` for a run that may go
    ahead, ``skipped``, ``pause_model`` or ``notify`` otherwise), in the caller's transaction.
    A ``pause`` decision pauses the model's automatic runs until a person resumes them
    (:func:`~edgeloop.fleet.set_autoheal_model_paused`).

    A job queued by hand (:func:`is_hand_queued`) has no alert for the rules to match: it is a
    person's order to heal, decided ``heal`` by the rule ``manual``, under the same limits (the
    kill switch, the model's pause, the rate limit and cool-down, one run per cohort)."""
    model, cohort = str(job["model"]), str(job["cohort"])
    detail = job.get("detail") if isinstance(job.get("detail"), Mapping) else {}
    assert isinstance(detail, Mapping)
    if is_hand_queued(job):
        d = Decision("heal", MANUAL_RULE, "info", (),
                     f"queued by hand by {job.get('created_by') or '?'}: "
                     f"{str(job.get('reason') or '')[:200]}")
    else:
        d = decide(policy, model, cohort, detail)
    if d.action == "heal":
        why = admission(s, policy, model, now)
        if why is not None:
            d = Decision("skip", d.rule, d.severity, d.kinds, why)
    logged = {**d.to_dict(), "version": job.get("version")}
    if d.action == "pause":
        set_autoheal_model_paused(s, model, True, actor=actor, now=now, job_id=int(job["id"]),
                                  cohort=cohort, reason=f"{d.reason} on an alert of {cohort}",
                                  detail=logged)
        return d
    action = {"heal": "started", "notify": "notify"}.get(d.action, "skipped")
    record_autoheal_action(s, action, actor=actor, now=now, model=model, cohort=cohort,
                           job_id=int(job["id"]), detail=logged)
    return d
