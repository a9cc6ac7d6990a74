"""Monitoring in the server: the evaluation loop, alert actions and the admin API.

:class:`Monitor` gives ``create_app`` a background task (:meth:`Monitor.run`: every
``monitor_interval_s``, evaluate each version that sent sketches within the window) and a
router under ``/v1/admin/monitor``. A raised alert is recorded as an event, shown on the
dashboard, POSTed to ``monitor_webhook_url`` (bounded retries, in the background) and, as
configured, rolls back the model's active rollouts to the alerting version
(``monitor_rollback``), pauses its running rollouts to or from it (``monitor_pause_rollouts``)
and queues a fine-tuning job for each alerting cohort (``monitor_finetune_jobs``; the jobs API
under ``/v1/admin/monitor/jobs`` lists, claims and finishes them, ``_monitor_jobs``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Response
from sqlalchemy.orm import Session

from edgeloop.db import (
    MonitorEventRow,
    MonitorReferenceRow,
    ReportRow,
    RolloutRow,
    read_session,
    write_session,
)
from edgeloop.errors import RolloutError
from edgeloop.fleet import _monitor_store as ms
from edgeloop.fleet import _rollout_store as rs
from edgeloop.fleet._degradation import degradation
from edgeloop.fleet._http import (
    JSON_BODY,
    ServerContext,
    json_object,
    raw_body,
    require_admin,
    utc_now,
)
from edgeloop.fleet._monitor_jobs import (
    DEFAULT_LEASE_S,
    MAX_DB_INT,
    MAX_LEASE_S,
    claim_job,
    finish_job,
    get_job,
    job_dict,
    list_jobs,
    queue_job,
)
from edgeloop.fleet._store import Refused
from edgeloop.monitor.drift import AlertPolicy

__all__ = ["Monitor", "parse_since", "post_with_retries"]

DEGRADATION_SPAN = 24  # trends over the last 24 monitoring windows (a day at the default hour)

_log = logging.getLogger("edgeloop.fleet.monitor")
WEBHOOK_ATTEMPTS = 4
WEBHOOK_TIMEOUT_S = 5.0


def parse_since(text: str | None, now: datetime, default: timedelta) -> datetime:
    """``since``: an ISO time, or a duration back from now (``90s``, ``30m``, ``6h``, ``2d``)."""
    if not text:
        return now - default
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if text[-1:] in units and text[:-1].replace(".", "", 1).isdigit():
        return now - timedelta(seconds=float(text[:-1]) * units[text[-1]])
    try:
        when = datetime.fromisoformat(text)
    except ValueError as e:
        raise Refused(400, "bad_query", f"since {text!r}: expected an ISO time or a duration "
                                        "like 30m, 6h, 2d") from e
    return when if when.tzinfo else when.replace(tzinfo=now.tzinfo)


def _cohort(text: str | None) -> str:
    if not text or text == ms.ALL:
        return ms.ALL
    label, sep, value = text.partition("=")
    if not sep or not label or not value:
        raise Refused(400, "bad_query", f"cohort {text!r}: expected LABEL=VALUE")
    return ms.cohort_key(label, value)


class Monitor:
    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx
        st = ctx.settings
        self.policy = AlertPolicy(raise_after=st.monitor_raise_after,
                                  clear_after=st.monitor_clear_after)
        self.window = timedelta(seconds=st.monitor_window_s)
        self.webhook_log: list[dict[str, Any]] = []  # deliveries of this process (tests, status)

    # --- evaluation and actions ------------------------------------------------------------
    def tick(self, model: str | None = None, version: int | None = None,
             force: bool = False) -> list[dict[str, Any]]:
        """Evaluate every version with sketches in the window (or the one asked for); act on
        the alerts raised. Returns the cohort results."""
        now = utc_now()
        out: list[dict[str, Any]] = []
        events: list[dict[str, Any]] = []
        window_s = self.window.total_seconds()
        with read_session(self.ctx.engine) as s:  # the statistics, outside the write lock
            if model is not None and version is not None:
                targets = [(model, version)]
            else:
                targets = [t for t in ms.monitored_versions(s, now - self.window)
                           if model is None or t[0] == model]
            tested = [t for m, v in targets if (t := ms.cohort_reports(
                s, m, v, now, window_s=window_s, force=force)) is not None and t.reports]
        if not tested:
            return out
        with write_session(self.ctx.engine) as s:
            for t in tested:
                m, v = t.model, t.version
                results = ms.record_evaluation(s, t, now, policy=self.policy, force=force)
                actions = self._act(s, m, v, [r for r in results if r.event == "raised"], now)
                for r in results:
                    item = {"model": m, "version": v, **r.to_dict()}
                    if r.event is not None:
                        item["actions"] = actions if r.event == "raised" else []
                        events.append({"event": r.event, "model": m, "version": v,
                                       "cohort": r.cohort, "at": now.isoformat(),
                                       "detail": r.alert.get("detail", {}),
                                       "actions": item["actions"]})
                    out.append(item)
            if _sweep_due(now):
                ms.sweep(s, now, timedelta(seconds=self.ctx.settings.monitor_retention_s))
        for ev in events:
            self._notify(ev)
        return out

    def _act(self, s: Session, model: str, version: int, raised: list[ms.CohortResult],
             now: datetime) -> list[str]:
        """What the settings ask of a raised alert, naming its cohorts (the labelled ones
        first): roll back the active rollouts of ``model`` to ``version``
        (``monitor_rollback``), pause the running ones to or from it
        (``monitor_pause_rollouts``; a rollout to it that is rolled back is not also paused),
        and queue a fine-tuning job per alerting cohort (``monitor_finetune_jobs``). Each
        action taken is recorded on the alert's event."""
        done: list[str] = []
        st = self.ctx.settings
        if not raised:
            return done
        named = sorted(raised, key=lambda r: (r.cohort == ms.ALL, r.cohort))
        what = "; ".join(f"cohort {r.cohort} ({_drifted(r)})" for r in named)
        reason = f"monitoring alert on {model}@{version}: {what}"
        if st.monitor_pause_rollouts or st.monitor_rollback:
            rows = s.scalars(sa.select(RolloutRow).where(
                RolloutRow.model == model, RolloutRow.state.in_(("running", "soaking", "paused")),
                sa.or_(RolloutRow.to_version == version, RolloutRow.from_version == version),
            ).order_by(RolloutRow.id))
            for row in list(rows):
                if st.monitor_rollback and row.to_version == version:
                    action, did = "rollback", "rolled back"
                elif st.monitor_pause_rollouts and row.state != "paused":
                    action, did = "pause", "paused"
                else:
                    continue
                try:
                    rs.act(s, row.id, action, reason[:1000], "monitor", now)
                    done.append(f"{did} rollout {row.id}")
                except RolloutError as e:
                    done.append(f"rollout {row.id} not {did}: {e}")
        if st.monitor_finetune_jobs:
            for r in named:
                detail = r.alert.get("detail", {})
                # a fleet-wide alarm explained by labelled cohorts is theirs to fine-tune for
                if r.cohort == ms.ALL and detail.get("cohorts"):
                    continue
                job, new = queue_job(
                    s, "finetune", model, version, r.cohort, now=now, detail=detail,
                    event_id=r.event_id, reason=f"monitoring alert on {model}@{version}: "
                    f"cohort {r.cohort} ({_drifted(r)})")
                done.append(f"queued finetune job {job.id}" if new
                            else f"finetune job {job.id} already {job.state}")
        for r in raised:  # the actions go with the stored event
            ev = s.get(MonitorEventRow, r.event_id) if r.event_id is not None else None
            if ev is not None:
                ev.detail = {**ev.detail, "actions": done}
        return done

    def _notify(self, event: dict[str, Any]) -> None:
        url = self.ctx.settings.monitor_webhook_url
        if url is None:
            return
        threading.Thread(target=self._deliver, args=(url, event), daemon=True,
                         name="edgeloop-monitor-webhook").start()

    def _deliver(self, url: str, event: dict[str, Any]) -> None:
        body = json.dumps({"kind": "monitor_alert", **event}, default=str).encode()
        status, attempts = post_with_retries(url, body)
        self.webhook_log.append({"url": url, "status": status, "attempts": attempts, **event})
        del self.webhook_log[:-100]  # bounded

    async def run(self) -> None:
        interval = self.ctx.settings.monitor_interval_s
        if interval <= 0:
            return
        while True:
            await asyncio.sleep(interval)
            try:
                await asyncio.to_thread(self.tick)
            except Exception:  # the loop must outlive any one evaluation
                _log.exception("monitor evaluation failed")

    # --- the admin API ---------------------------------------------------------------------
    def router(self) -> APIRouter:
        engine = self.ctx.engine
        router = APIRouter(prefix="/v1/admin/monitor", dependencies=[Depends(require_admin)])

        @router.get("/status", summary="Alerts (active first), recent alert events, and "
                    "latency, error and self-test trends per version and cohort")
        def status(model: str | None = None, version: int | None = None) -> dict[str, Any]:
            now = utc_now()
            window = self.ctx.settings.monitor_window_s
            with read_session(engine) as s:
                alerts = ms.alerts(s, model, version)
                alerts.sort(key=lambda a: (not a["active"], a["model"], a["version"],
                                           a["cohort"]))
                since = now - timedelta(seconds=DEGRADATION_SPAN * window)
                models = [model] if model is not None else sorted(
                    m for m in s.scalars(
                        sa.select(ReportRow.model).where(ReportRow.received_at >= since)
                        .distinct()
                    ) if m is not None
                )
                trends = [
                    t for m in models
                    for t in degradation(s, m, version, now, since_s=DEGRADATION_SPAN * window,
                                         bucket_s=window)
                ]
                return {"alerts": alerts, "events": ms.events(s, model, 50),
                        "webhook": self.webhook_log[-20:], "degradation": trends}

        @router.post("/evaluate", openapi_extra=JSON_BODY, summary="Evaluate now")
        def evaluate(body: bytes = Depends(raw_body)) -> dict[str, Any]:
            data = json_object(body or b"{}")
            model, version = data.get("model"), data.get("version")
            if model is not None and not isinstance(model, str):
                raise Refused(400, "bad_body", f"model {model!r:.40}: expected a name")
            if version is not None and (not isinstance(version, int) or model is None):
                raise Refused(400, "bad_body", "version: an int, with a model")
            return {"results": self.tick(model, version, force=bool(data.get("force")))}

        @router.get("/report/{model}/{version}", summary="Evaluations over time, one cohort")
        def report(model: str, version: int, cohort: str | None = None,
                   since: str | None = None) -> dict[str, Any]:
            return self.report_data(model, version, cohort, since)

        @router.get("/report/{model}/{version}/html", response_class=Response,
                    summary="The HTML report")
        def report_html(model: str, version: int, cohort: str | None = None,
                        since: str | None = None) -> Response:
            from edgeloop.fleet._monitor_report import render_report

            data = self.report_data(model, version, cohort, since, every_cohort=True)
            return Response(render_report(data), media_type="text/html")

        @router.get("/references/{model}/{version}", summary="A version's reference history")
        def references(model: str, version: int) -> dict[str, Any]:
            with read_session(engine) as s:
                rows = s.scalars(sa.select(MonitorReferenceRow).where(
                    MonitorReferenceRow.model == model, MonitorReferenceRow.version == version
                ).order_by(MonitorReferenceRow.id))
                return {"references": [
                    {"sha256": r.sha256, "origin": r.origin, "reason": r.reason,
                     "created_by": r.created_by, "created_at": r.created_at.isoformat()}
                    for r in rows]}

        @router.post("/references/{model}/{version}", status_code=201, openapi_extra=JSON_BODY,
                     summary="Re-baseline a version (explicit, with a reason)")
        def rebaseline(model: str, version: int,
                       body: bytes = Depends(raw_body)) -> dict[str, Any]:
            data = json_object(body)
            ref, reason = data.get("reference"), data.get("reason")
            if not isinstance(ref, dict) or not isinstance(reason, str):
                raise Refused(400, "bad_body", 'expected {"reference": {...}, "reason": str}')
            with write_session(engine) as s:
                row = ms.rebaseline(s, model, version, json.dumps(ref).encode(), reason,
                                    str(data.get("actor") or "fleet-admin"), utc_now())
                return {"sha256": row.sha256, "origin": row.origin, "reason": row.reason}

        @router.get("/jobs", summary="Monitoring jobs (fine-tuning), newest first")
        def jobs(kind: str | None = None, state: str | None = None, model: str | None = None,
                 limit: int = 100) -> dict[str, Any]:
            with read_session(engine) as s:
                return {"jobs": [job_dict(j) for j in list_jobs(
                    s, kind=kind, state=state, model=model, limit=limit)]}

        @router.post("/jobs", status_code=201, openapi_extra=JSON_BODY,
                     summary="Queue a job by hand (an alert queues its own)")
        def queue(body: bytes = Depends(raw_body)) -> dict[str, Any]:
            data = json_object(body)
            kind = _text(data, "kind", "finetune")
            model = _text(data, "model")
            version = data.get("version")
            if (not isinstance(version, int) or isinstance(version, bool)
                    or not 0 <= version <= MAX_DB_INT):
                raise Refused(400, "bad_body", f"version {version!r:.40}: expected an int from 0 "
                                               f"to {MAX_DB_INT}")
            cohort = _cohort(_text(data, "cohort", ms.ALL))
            reason = _text(data, "reason", "queued by an admin", limit=1000)
            with write_session(engine) as s:
                row, new = queue_job(s, kind, model, version, cohort, reason=reason,
                                     now=utc_now(), created_by=_text(data, "actor",
                                                                     "fleet-admin"))
                return {"job": job_dict(row), "created": new}

        @router.post("/jobs/claim", openapi_extra=JSON_BODY,
                     summary="Claim the oldest queued job of a kind ({'job': null}: none)")
        def claim(body: bytes = Depends(raw_body)) -> dict[str, Any]:
            data = json_object(body)
            kind, worker = _text(data, "kind", "finetune"), _text(data, "worker")
            lease = data.get("lease_s", DEFAULT_LEASE_S)
            if (not isinstance(lease, int | float) or isinstance(lease, bool)
                    or not 0 < lease <= MAX_LEASE_S):  # NaN fails the comparison too
                raise Refused(400, "bad_body", f"lease_s {lease!r:.40}: expected seconds > 0 "
                                               f"and at most {MAX_LEASE_S:g}")
            with write_session(engine) as s:
                row = claim_job(s, kind, worker, utc_now(), lease_s=float(lease))
                return {"job": None if row is None else job_dict(row)}

        @router.get("/jobs/{job_id}", summary="One monitoring job")
        def job(job_id: int) -> dict[str, Any]:
            with read_session(engine) as s:
                return {"job": job_dict(get_job(s, job_id))}

        @router.post("/jobs/{job_id}/finish", openapi_extra=JSON_BODY,
                     summary="Finish a running job: succeeded or failed, with its result")
        def finish(job_id: int, body: bytes = Depends(raw_body)) -> dict[str, Any]:
            data = json_object(body)
            state = _text(data, "state")
            result = data.get("result", {})
            if not isinstance(result, dict):
                raise Refused(400, "bad_body", f"result {result!r:.40}: expected a JSON object")
            worker = _text(data, "worker") if "worker" in data else None
            with write_session(engine) as s:
                return {"job": job_dict(finish_job(s, job_id, state, result, utc_now(),
                                                   worker=worker))}

        return router

    def report_data(self, model: str, version: int, cohort: str | None, since: str | None,
                    *, every_cohort: bool = False) -> dict[str, Any]:
        now = utc_now()
        start = parse_since(since, now, timedelta(days=1))
        want = _cohort(cohort)
        with read_session(self.ctx.engine) as s:
            if ms.latest_reference(s, model, version) is None:
                raise Refused(404, "not_found", f"{model}@{version} has no monitoring reference")
            rows = ms.evaluations(s, model, version, start, None if every_cohort else [want])
            alerts = ms.alerts(s, model, version)
        # the latest evaluation that had enough rows to test (a thin last window says little)
        mine = [r for r in rows if r["cohort"] == want]
        judged = [r for r in mine if r["alarm"] is not None]
        latest = judged[-1] if judged else (mine[-1] if mine else None)
        return {"model": model, "version": version, "cohort": want, "since": start.isoformat(),
                "evaluations": rows, "latest": latest, "alerts": alerts}


def post_with_retries(
    url: str,
    body: bytes,
    *,
    attempts: int = WEBHOOK_ATTEMPTS,
    timeout_s: float = WEBHOOK_TIMEOUT_S,
    backoff_s: float = 0.5,
) -> tuple[int | None, int]:
    """POST ``body`` with bounded retries (a 5xx or a transport error is retried after
    ``backoff_s * 2**attempt``); returns the last status (None: never answered) and the
    attempts made. A receiver that stays down loses the notification, never the alert (it is
    in the database and on the dashboard)."""
    import httpx

    status: int | None = None
    for attempt in range(attempts):
        try:
            r = httpx.post(url, content=body, timeout=timeout_s,
                           headers={"Content-Type": "application/json"})
            status = r.status_code
            if status < 500:
                return status, attempt + 1
        except httpx.HTTPError as e:
            _log.warning("monitor webhook %s: %s", url, e)
        if attempt + 1 < attempts:
            time.sleep(backoff_s * 2**attempt)
    return status, attempts


def _drifted(r: ms.CohortResult) -> str:
    detail = r.alert.get("detail", {})
    text = ", ".join(detail.get("drifted", [])) or "accuracy"
    if detail.get("cohorts"):  # a fleet-wide alarm: the labelled cohorts alarming with it
        text += f"; alarming: {', '.join(detail['cohorts'])}"
    return text


_MISSING = object()


def _text(data: dict[str, Any], key: str, default: Any = _MISSING, *, limit: int = 200) -> str:
    """A non-empty string field of at most ``limit`` characters (400 naming it otherwise)."""
    value = data.get(key, default)
    if value is _MISSING:
        raise Refused(400, "bad_body", f"{key}: required (a string)")
    if (not isinstance(value, str) or not value.strip() or len(value) > limit
            or "\x00" in value):  # PostgreSQL text refuses NUL
        raise Refused(400, "bad_body", f"{key} {value!r:.40}: expected a non-empty string of "
                                       f"at most {limit} characters (no NUL)")
    return value


def _sweep_due(now: datetime) -> bool:
    """About one evaluation in 16 also sweeps old sketches and evaluations."""
    return int(now.timestamp() * 1000) % 16 == 0
