"""The fleet dashboard: server-rendered pages (jinja2) with inline SVG charts, under /dashboard.

::

    /dashboard                    fleet overview: devices by state, version, hardware; rollouts;
                                  monitoring alerts and jobs
    /dashboard/devices            the device list: filters (version, hardware, state, label, last
                                  seen), counts by state, pages (SQL-side: ``_inventory``)
    /dashboard/rollouts/{id}      a rollout's timeline and each gate's stage vs control chart,
                                  with a pause button
    /dashboard/devices/{id}       one device and its latest telemetry
    /dashboard/monitor/{m}/{v}    the monitoring report of a version (plots over time per
                                  feature and per cohort, latest tests, alerts)
    /dashboard/autoheal           auto-heal: the kill switch (pause/resume buttons), paused
                                  models (resume), the policy each worker runs (limits,
                                  budget, gates), recent runs with their steps, versions and
                                  rollouts, the audit log
    /dashboard/login              admin token -> an HttpOnly, SameSite=Strict session cookie
                                  (``Secure`` when the server speaks TLS)

Everything ships in the package (``fleet/templates``, ``fleet/static``): no CDN, since fleets
run offline. Sessions live on the server (``_sessions``): the cookie is a random token whose
sha256 the database keeps with an expiry; sign-out deletes it; forms carry the session's own
random CSRF value; failed sign-ins are throttled per client address.
"""

from __future__ import annotations

import hmac
import math
from datetime import datetime
from importlib import resources
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from edgeloop.artifacts import RolloutControls
from edgeloop.db import read_session, write_session
from edgeloop.errors import EdgeloopError, InputError, RolloutError
from edgeloop.fleet import _autoheal as ah
from edgeloop.fleet import _monitor_store as ms
from edgeloop.fleet import _rollout_store as rs
from edgeloop.fleet import _store as store
from edgeloop.fleet._charts import Series, line_chart
from edgeloop.fleet._http import ServerContext, admin_token_ok, raw_body, utc_now
from edgeloop.fleet._inventory import DeviceQuery, device_page, fleet_counts, human_duration
from edgeloop.fleet._monitor_jobs import job_dict, list_jobs
from edgeloop.fleet._sessions import (
    SessionPolicy,
    end_session,
    find_session,
    record_login_failure,
    start_session,
    throttled,
)
from edgeloop.fleet._store import Refused

__all__ = ["dashboard_router"]

COOKIE = "edgeloop_dashboard"
SESSIONS = SessionPolicy()  # 8 h sessions; 5 failed sign-ins per client in 5 min, then 429
_STATIC = {"dashboard.css": "text/css; charset=utf-8"}


def _seconds(at: str | None, start: datetime) -> float | None:
    if not at:
        return None
    when = datetime.fromisoformat(at.replace("Z", "+00:00"))
    return (when - start).total_seconds()


_FORM_INTS = ("max_per_minute", "max_concurrent_downloads", "max_failures")


def _controls_from_form(data: dict[str, str]) -> RolloutControls:
    """The rollout page's controls form (an empty field turns that control off; the failure
    rate in percent); 400 naming the field and what it expects."""
    given: dict[str, Any] = {}
    for name in _FORM_INTS:
        text = data.get(name, "").strip()
        if text:
            if not text.isdigit():
                raise Refused(400, "bad_body", f"{name} {text!r}: expected a whole number")
            given[name] = int(text)
    for name, scale in (("download_timeout_s", 1.0), ("max_failure_rate", 0.01)):
        text = data.get(name, "").strip()
        if text:
            try:
                value = float(text)
            except ValueError:
                value = math.nan
            if not math.isfinite(value):
                raise Refused(400, "bad_body", f"{name} {text!r}: expected a number")
            given[name] = value * scale
    for name in ("window", "window_label", "window_offset"):
        text = data.get(name, "").strip()
        if text:
            given[name] = text
    try:
        return RolloutControls.from_dict(given)
    except EdgeloopError as e:
        raise Refused(400, "bad_body", f"rollout controls: {e}") from e


def gate_charts(rollout: dict[str, Any]) -> list[dict[str, Any]]:
    """Per gate: its latest check and an SVG chart of stage vs control (and the bound)."""
    start = datetime.fromisoformat(str(rollout["created_at"]).replace("Z", "+00:00"))
    by_gate: dict[str, list[dict[str, Any]]] = {g: [] for g in rollout["gates"]}
    for c in rollout.get("checks", []):
        by_gate.setdefault(c["gate"], []).append(c)
    out = []
    for gate, checks in by_gate.items():

        def points(key: str, cs: list[dict[str, Any]] = checks) -> list[tuple[float, float]]:
            pts = []
            for c in cs:
                x = _seconds(c["at"], start)
                if x is not None and c[key] is not None:
                    pts.append((x, float(c[key])))
            return pts

        svg = line_chart(
            gate,
            [
                Series(f"stage (v{rollout['to_version']})", points("treatment"), "treatment"),
                Series(f"control (v{rollout['from_version']})", points("control"), "control"),
                Series("bound", points("bound"), "bound", dashed=True),
            ],
            "s since start",
        )
        out.append({"gate": gate, "svg": svg, "latest": checks[-1] if checks else None})
    return out


def device_chart(reports: list[dict[str, Any]], metric: str) -> str:
    pts = []
    rows = list(reversed(reports))
    for i, r in enumerate(rows):
        v = (r.get("metrics") or {}).get(metric)
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
            pts.append((float(i), float(v)))
    return line_chart(metric, [Series(metric, pts, "treatment")], "report")


def number(value: Any, fmt: str = "%g") -> str:
    """A stored metric formatted for a page; ``-`` for anything that is not a finite number
    (reports stored before ingest validated them may hold strings or NaN)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return "-"
    return fmt % value


def dashboard_router(ctx: ServerContext) -> APIRouter:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("edgeloop.fleet", "templates"),
        autoescape=jinja2.select_autoescape(["html"]),
    )
    env.filters["num"] = number
    env.filters["duration"] = human_duration
    engine = ctx.engine

    def signed_in(request: Request) -> None:
        with read_session(engine) as s:
            csrf = find_session(s, request.cookies.get(COOKIE, ""), utc_now())
        if csrf is None:
            raise HTTPException(303, "sign in first", headers={"Location": "/dashboard/login"})
        request.state.csrf = csrf

    def page(request: Request, name: str, **values: Any) -> HTMLResponse:
        csrf = getattr(request.state, "csrf", "")
        html = env.get_template(name).render(csrf=csrf, now=utc_now(), **values)
        return HTMLResponse(html, headers={"Cache-Control": "no-store"})

    def form(body: bytes) -> dict[str, str]:
        parsed = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
        return {k: v[0] for k, v in parsed.items()}

    public = APIRouter(prefix="/dashboard", include_in_schema=False)
    router = APIRouter(
        prefix="/dashboard", include_in_schema=False, dependencies=[Depends(signed_in)]
    )

    @public.get("/login")
    def login_page(request: Request, error: str | None = None) -> HTMLResponse:
        return page(request, "login.html", error=error)

    @public.post("/login")
    def login(request: Request, body: bytes = Depends(raw_body)) -> Response:
        client = request.client.host if request.client else "unknown"
        now = utc_now()
        with write_session(engine) as s:
            if throttled(s, client, now, SESSIONS):
                wait = SESSIONS.window.total_seconds()
                raise Refused(
                    429, "throttled", f"too many failed sign-ins from {client}; wait {wait:g} s"
                )
            if not admin_token_ok(ctx, form(body).get("token", "")):
                record_login_failure(s, client, now, SESSIONS)
                cookie = None
            else:
                cookie, _ = start_session(s, now, SESSIONS)
        if cookie is None:
            return RedirectResponse("/dashboard/login?error=1", status_code=303)
        resp = RedirectResponse("/dashboard", status_code=303)
        resp.set_cookie(
            COOKIE,
            cookie,
            max_age=int(SESSIONS.ttl.total_seconds()),
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path="/dashboard",
        )
        return resp

    @public.post("/logout")
    def logout(request: Request) -> Response:
        with write_session(engine) as s:
            end_session(s, request.cookies.get(COOKIE, ""))
        resp = RedirectResponse("/dashboard/login", status_code=303)
        resp.delete_cookie(COOKIE, path="/dashboard")
        return resp

    @public.get("/static/{name}")
    def static(name: str) -> Response:
        if name not in _STATIC:
            raise Refused(404, "not_found", f"no static file {name!r}")
        data = resources.files("edgeloop.fleet").joinpath("static", name).read_bytes()
        return Response(data, media_type=_STATIC[name])

    def ago(value: datetime | None, now: datetime) -> str:
        if value is None:
            return "never"
        when = value if value.tzinfo else value.replace(tzinfo=now.tzinfo)
        return f"{human_duration((now - when).total_seconds())} ago"

    env.filters["ago"] = ago

    @router.get("")
    def overview(request: Request) -> HTMLResponse:
        now = utc_now()
        with read_session(engine) as s:
            counts = fleet_counts(s, now, ctx.stale_after)
            first = device_page(s, DeviceQuery(per_page=50), now, ctx.stale_after)
            rollouts = [rs.rollout_dict(s, r) for r in rs.list_rollouts(s, limit=50)]
            alerts = ms.alerts(s)
            alerts.sort(key=lambda a: (not a["active"], a["model"], a["version"], a["cohort"]))
            jobs = [job_dict(j) for j in list_jobs(s, limit=20)]
        return page(
            request,
            "overview.html",
            counts=counts,
            total=counts["total"],
            versions=counts["version"],
            hardware=counts["hardware"],
            health=counts["state"],
            devices=first,
            query=DeviceQuery(),
            rollouts=rollouts,
            alerts=alerts[:100],
            jobs=jobs,
        )

    @router.get("/devices")
    def devices(request: Request) -> HTMLResponse:
        query = DeviceQuery.from_params(dict(request.query_params))
        now = utc_now()
        with read_session(engine) as s:
            counts = fleet_counts(s, now, ctx.stale_after)
            found = device_page(s, query, now, ctx.stale_after)
        return page(request, "devices.html", counts=counts, devices=found, query=query)

    @router.get("/rollouts/{rollout_id}")
    def rollout(request: Request, rollout_id: int) -> HTMLResponse:
        try:
            with read_session(engine) as s:
                r = rs.rollout_dict(s, rs.get_rollout(s, rollout_id), detail=True)
        except RolloutError as e:
            raise Refused(404, "not_found", str(e)) from e
        return page(request, "rollout.html", r=r, charts=gate_charts(r))

    @router.post("/rollouts/{rollout_id}/{action}")
    def act(
        request: Request, rollout_id: int, action: str, body: bytes = Depends(raw_body)
    ) -> Response:
        data = form(body)
        if not hmac.compare_digest(data.get("csrf", ""), request.state.csrf):
            raise Refused(403, "csrf", "dashboard form without a valid CSRF value")
        if action not in ("pause", "resume", "controls"):
            raise Refused(404, "not_found", f"no dashboard action {action!r}")
        try:
            with write_session(engine) as s:
                if action == "controls":
                    controls = _controls_from_form(data)
                    rs.set_controls(s, rollout_id, controls, "dashboard", utc_now())
                else:
                    rs.act(
                        s, rollout_id, action, f"{action} from the dashboard", "dashboard",
                        utc_now(),
                    )  # fmt: skip
        except RolloutError as e:
            raise Refused(409, "rollout", str(e)) from e
        return RedirectResponse(f"/dashboard/rollouts/{rollout_id}", status_code=303)

    @router.get("/autoheal")
    def autoheal(request: Request) -> HTMLResponse:
        with read_session(engine) as s:
            state = ah.autoheal_state(s).to_dict()
            paused_models = ah.autoheal_paused_models(s)
            workers = ah.autoheal_actions(s, action="worker_started", limit=5)
            runs = ah.autoheal_runs(s, limit=30)
            actions = [a for a in ah.autoheal_actions(s, limit=100)
                       if a["action"] != "worker_started"][:60]
        return page(request, "autoheal.html", state=state, paused_models=paused_models,
                    policy=workers[0] if workers else None, workers=workers, runs=runs,
                    actions=actions)

    @router.post("/autoheal/{action}")
    def autoheal_act(request: Request, action: str, body: bytes = Depends(raw_body)
                     ) -> Response:
        """The kill switch (and one model's pause) from the dashboard; in the audit log with
        the actor ``dashboard``."""
        data = form(body)
        if not hmac.compare_digest(data.get("csrf", ""), request.state.csrf):
            raise Refused(403, "csrf", "dashboard form without a valid CSRF value")
        if action not in ("pause", "resume"):
            raise Refused(404, "not_found", f"no dashboard action {action!r}")
        model = data.get("model", "").strip()
        reason = data.get("reason", "").strip() or f"{action} from the dashboard"
        try:
            with write_session(engine) as s:
                if model:
                    ah.set_autoheal_model_paused(s, model, action == "pause", actor="dashboard",
                                                 reason=reason, now=utc_now())
                else:
                    ah.set_autoheal_paused(s, action == "pause", actor="dashboard",
                                           reason=reason, now=utc_now())
        except InputError as e:
            raise Refused(400, "bad_body", str(e)) from e
        return RedirectResponse("/dashboard/autoheal", status_code=303)

    @router.get("/monitor/{model}/{version}")
    def monitor(request: Request, model: str, version: int, cohort: str | None = None,
                since: str | None = None) -> HTMLResponse:
        from edgeloop.fleet._monitor_report import render_report

        data = request.app.state.monitor.report_data(model, version, cohort, since,
                                                     every_cohort=True)
        return HTMLResponse(render_report(data), headers={"Cache-Control": "no-store"})

    @router.get("/devices/{device_id}")
    def device(request: Request, device_id: str) -> HTMLResponse:
        with read_session(engine) as s:
            d = store.device_info(store.get_device(s, device_id), utc_now(), ctx.stale_after)
            reports = store.recent_reports(s, device_id, limit=50)
        charts = [device_chart(reports, m) for m in ("p99_ms", "error_rate")]
        return page(request, "device.html", d=d.to_dict(), reports=reports[:20], charts=charts)

    wrapper = APIRouter()
    wrapper.include_router(public)
    wrapper.include_router(router)
    return wrapper
