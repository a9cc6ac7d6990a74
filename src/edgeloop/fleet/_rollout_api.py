"""Rollouts in the server: the admin API (``/v1/admin/rollouts``) and the driving loop.

:class:`Rollouts` gives ``create_app`` three things: the director's policy per check-in, an
admin router, and :meth:`Rollouts.run`, a background task that ticks every rollout in effect
(a few times per poll interval). The tick is one write transaction whose changes are
compare-and-set, so it is idempotent and every server process may run it.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from fastapi import APIRouter, Depends
from sqlalchemy.orm import Session

from edgeloop.artifacts import RolloutControls, RolloutPlan
from edgeloop.db import read_session, write_session
from edgeloop.errors import EdgeloopError, RolloutError
from edgeloop.fleet import _rollout_store as rs
from edgeloop.fleet._canary import parse_cohort
from edgeloop.fleet._director import Policy
from edgeloop.fleet._gates import GateOptions
from edgeloop.fleet._http import JSON_BODY, ServerContext, raw_body, require_admin, utc_now
from edgeloop.fleet._store import Refused

__all__ = ["Rollouts"]

_log = logging.getLogger("edgeloop.fleet.rollout")


def _refuse(e: RolloutError) -> Refused:
    text = str(e)
    status = 404 if text.startswith("no rollout") else 409
    return Refused(status, "rollout", text)


def _body(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body or b"{}")
    except (ValueError, RecursionError) as e:  # RecursionError: nested too deeply
        raise Refused(400, "bad_body", f"request body is not JSON ({e})") from e
    if not isinstance(data, dict):
        raise Refused(400, "bad_body", "request body: expected a JSON object")
    return data


CONTROL_FIELDS = (
    "max_per_minute",
    "max_concurrent_downloads",
    "download_timeout_s",
    "window",
    "window_label",
    "window_offset",
    "max_failures",
    "max_failure_rate",
)


def controls_from_body(data: dict[str, Any]) -> RolloutControls:
    """The request's rollout controls (absent or null: off); 400 naming the bad value."""
    given = {k: data[k] for k in CONTROL_FIELDS if data.get(k) is not None}
    try:
        return RolloutControls.from_dict(given)
    except EdgeloopError as e:
        raise Refused(400, "bad_body", f"rollout request: {e}") from e


def plan_from_body(data: dict[str, Any]) -> tuple[RolloutPlan, GateOptions, float]:
    """The rollout request: a RolloutPlan's fields plus gate options and a switch timeout."""
    try:
        cohort = data.get("cohort") or {}
        if isinstance(cohort, str):
            cohort = parse_cohort(cohort)
        plan = RolloutPlan.from_dict(
            {
                "model": data.get("model"),
                "version": data.get("version"),
                "stages": data.get("stages", [1, 10, 50, 100]),
                "soak_s": data.get("soak_s", 600.0),
                "gates": data.get("gates", []),
                "cohort": cohort,
            }
        )
        defaults = GateOptions()
        opts = GateOptions(
            min_devices=int(data.get("min_devices", defaults.min_devices)),
            min_requests=int(data.get("min_requests", defaults.min_requests)),
            min_reports=int(data.get("min_reports", defaults.min_reports)),
            alpha=float(data.get("alpha", defaults.alpha)),
        )
        switch = float(data.get("switch_timeout_s", 0) or 0)
    except (EdgeloopError, TypeError, ValueError) as e:
        raise Refused(400, "bad_body", f"rollout request: {e}") from e
    if not isinstance(plan.model, str) or not plan.model or not isinstance(plan.version, int):
        raise Refused(400, "bad_body", "rollout request: expected model (str) and version (int)")
    if not 0 < opts.alpha < 0.5 or opts.min_devices < 1 or opts.min_requests < 1:
        raise Refused(400, "bad_body", f"gate options {opts.to_dict()}: out of range")
    return plan, opts, switch


class Rollouts:
    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx
        poll = ctx.settings.poll_interval_s
        self.tick_s = min(max(poll / 4.0, 0.2), 15.0)
        self.default_switch_timeout_s = 3.0 * poll
        self.latest = rs.LatestRollouts()  # each model's newest rollout, kept (docs/scale.md)

    def policy(self, s: Session) -> Policy:
        return rs.policy_for(s, utc_now(), self.latest)

    def tick(self) -> list[tuple[int, str]]:
        """One pass over the rollouts in effect (none: no write transaction at all)."""
        now = utc_now()
        with read_session(self.ctx.engine) as s:
            plans = rs.plan_ticks(s, now)  # the heavy part (telemetry, tests) outside the lock
        if not plans:
            return []
        with write_session(self.ctx.engine) as s:
            return rs.apply_ticks(s, plans, now)

    async def run(self) -> None:
        """Tick until cancelled; a failing tick (database away) is retried at the next one."""
        while True:
            try:
                await asyncio.to_thread(self.tick)
            except Exception:  # the loop must outlive any one tick; the next one retries
                _log.exception("rollout tick failed")
            await asyncio.sleep(self.tick_s)

    def router(self) -> APIRouter:
        ctx, engine = self.ctx, self.ctx.engine

        router = APIRouter(prefix="/v1/admin/rollouts", dependencies=[Depends(require_admin)])

        @router.post("", status_code=201, openapi_extra=JSON_BODY, summary="Start a rollout")
        def start(body: bytes = Depends(raw_body)) -> dict[str, Any]:
            data = _body(body)
            plan, opts, switch = plan_from_body(data)
            controls = controls_from_body(data)
            try:
                with write_session(engine) as s:
                    row = rs.start_rollout(
                        s,
                        plan,
                        alias=ctx.settings.alias,
                        now=utc_now(),
                        options=opts,
                        switch_timeout_s=switch or self.default_switch_timeout_s,
                        controls=controls,
                    )
                    return rs.rollout_dict(s, row, detail=True)
            except RolloutError as e:
                raise _refuse(e) from e

        @router.get("", summary="Rollouts, newest first")
        def list_(model: str | None = None, limit: int = 100) -> dict[str, Any]:
            with read_session(engine) as s:
                rows = rs.list_rollouts(s, model, max(1, min(limit, 1000)))
                return {"rollouts": [rs.rollout_dict(s, r) for r in rows]}

        @router.get("/{rollout_id}", summary="One rollout: state, timeline, gate checks")
        def get(rollout_id: int) -> dict[str, Any]:
            try:
                with read_session(engine) as s:
                    return rs.rollout_dict(s, rs.get_rollout(s, rollout_id), detail=True)
            except RolloutError as e:
                raise _refuse(e) from e

        @router.put(
            "/{rollout_id}/controls",
            openapi_extra=JSON_BODY,
            summary="Change a rollout's operator controls (absent or null: off)",
        )
        def controls(rollout_id: int, body: bytes = Depends(raw_body)) -> dict[str, Any]:
            data = _body(body)
            unknown = sorted(set(data) - set(CONTROL_FIELDS) - {"reason", "actor"})
            if unknown:
                raise Refused(
                    400, "bad_body", f"unknown field(s) {', '.join(unknown)}: expected "
                    f"{', '.join(CONTROL_FIELDS)}, reason, actor",
                )  # fmt: skip
            new = controls_from_body(data)
            actor = str(data.get("actor") or "fleet-admin")[:200]
            reason = data.get("reason")
            try:
                with write_session(engine) as s:
                    row = rs.set_controls(
                        s, rollout_id, new, actor, utc_now(), str(reason) if reason else None
                    )
                    return rs.rollout_dict(s, row, detail=True)
            except RolloutError as e:
                raise _refuse(e) from e

        @router.post(
            "/{rollout_id}/{action}",
            openapi_extra=JSON_BODY,
            summary="pause, resume, abort or rollback a rollout",
        )
        def act(rollout_id: int, action: str, body: bytes = Depends(raw_body)) -> dict[str, Any]:
            data = _body(body)
            reason = str(data.get("reason") or f"{action} by an admin")
            actor = str(data.get("actor") or "fleet-admin")
            try:
                with write_session(engine) as s:
                    row = rs.act(s, rollout_id, action, reason, actor, utc_now())
                    return rs.rollout_dict(s, row, detail=True)
            except RolloutError as e:
                raise _refuse(e) from e

        return router
