"""The fleet server: ``create_app(settings) -> FastAPI`` (protocol in docs/fleet-protocol.md).

Handlers are thin: parse the body into a protocol dataclass, open one transaction, call the
store, the director or the publisher, answer. Nothing lives in process memory but settings,
keys and metrics, so several processes can serve one database and data dir.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Any, TypeVar

import sqlalchemy as sa
from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy.orm import Session

from edgeloop import __version__
from edgeloop.artifacts import DeviceReport
from edgeloop.db import DeviceRow, make_engine, read_session, upgrade, write_session
from edgeloop.errors import AuthError, EdgeloopError, InputError
from edgeloop.fleet import _store as store
from edgeloop.fleet._admin import admin_router
from edgeloop.fleet._dashboard import dashboard_router
from edgeloop.fleet._director import Policy, default_policy, direct
from edgeloop.fleet._http import (
    JSON_BODY,
    ServerContext,
    parse_body,
    raw_body,
    signed_path,
    utc_now,
)
from edgeloop.fleet._metrics import CONTENT_TYPE, FleetMetrics
from edgeloop.fleet._publish import refresh_timestamp_if_due, rewrap_for_device
from edgeloop.fleet._rollout_api import Rollouts
from edgeloop.fleet._settings import (
    SETTINGS_ENV,
    FleetSecrets,
    FleetSettings,
    prepare_data_dir,
    settings_from_env,
)
from edgeloop.fleet._store import Refused
from edgeloop.protocol import (
    ENROLL_DEVICE_ID,
    CheckIn,
    CheckInResponse,
    Enrollment,
    EnrollRequest,
    KeyRequest,
    WrappedKey,
    ed25519_from_hex,
    iso_time,
    parse_signature_headers,
    public_hex,
    public_key_id,
    sign_assignment,
    verify_request,
)
from edgeloop.registry import BlobStore
from edgeloop.update import Repository

__all__ = ["PolicyLoader", "app_from_env", "create_app"]

T = TypeVar("T")

# Given the check-in's open session, the policy for this request (rollouts read their state).
PolicyLoader = Callable[[Session], Policy]

_TIMESTAMP_CHECK_S = 600.0


def create_app(
    settings: FleetSettings,
    *,
    policy_loader: PolicyLoader | None = None,
    routers: Sequence[APIRouter] = (),
) -> FastAPI:
    """The fleet server for ``settings``; secrets in the data dir are created if missing.

    ``policy_loader`` gives the director another policy per check-in (staged rollouts read
    their state from the check-in's session); ``routers`` add pages or APIs (a dashboard).
    Both find the engine, settings, secrets and repository in ``app.state.ctx``.
    """
    secrets_: FleetSecrets = prepare_data_dir(settings)
    engine = make_engine(settings.db_url, pool_pre_ping=True)
    if settings.migrate:
        upgrade(engine)
    repo = Repository(settings.tuf_path, secrets_.keyring)
    ctx = ServerContext(settings, engine, secrets_, BlobStore(settings.registry_path), repo)
    director_key_dict = {
        "keytype": "ed25519",
        "scheme": "ed25519",
        "keyval": {"public": public_hex(secrets_.director_key)},
    }
    ttl = timedelta(seconds=settings.assignment_ttl_s)
    rollouts = Rollouts(ctx)  # staged rollouts: the default policy, an admin API, a driver
    if policy_loader is None:
        policy_loader = rollouts.policy
    stale_after = ctx.stale_after
    retention = timedelta(seconds=settings.report_retention_s)

    def count_devices() -> dict[str, int]:
        with read_session(engine) as s:
            return store.device_counts(s, utc_now(), stale_after)

    metrics = FleetMetrics(count_devices)

    def refresh_timestamp() -> None:
        with write_session(engine) as s:
            refresh_timestamp_if_due(s, repo, utc_now())

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        async def keep_timestamp_fresh() -> None:
            while True:
                with contextlib.suppress(EdgeloopError):
                    await asyncio.to_thread(refresh_timestamp)
                await asyncio.sleep(_TIMESTAMP_CHECK_S)

        tasks = [asyncio.create_task(keep_timestamp_fresh()), asyncio.create_task(rollouts.run())]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            engine.dispose()

    app = FastAPI(
        title="edgeloop fleet server",
        version=__version__,
        description="Enrollment, signed assignments, TUF repository, telemetry and inventory "
        "for a fleet of edge devices. Wire protocol: docs/fleet-protocol.md.",
        lifespan=lifespan,
    )
    app.state.ctx = ctx
    app.state.settings = settings
    app.state.engine = engine
    app.state.metrics = metrics
    app.state.repository = repo

    @app.middleware("http")
    async def _measure(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        start = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        endpoint = getattr(route, "path", None) or (
            "/tuf" if request.url.path.startswith("/tuf/") else "other"
        )
        metrics.requests.labels(endpoint, str(response.status_code)).inc()
        metrics.latency.labels(endpoint).observe(time.perf_counter() - start)
        return response

    @app.exception_handler(Refused)
    async def _refused(_request: Request, exc: Refused) -> JSONResponse:
        if exc.status in (401, 403):
            metrics.auth_failures.labels(exc.reason).inc()
        headers = {"WWW-Authenticate": "Bearer"} if exc.reason == "admin" else None
        return JSONResponse({"detail": str(exc)}, status_code=exc.status, headers=headers)

    @app.exception_handler(EdgeloopError)
    async def _failed(_request: Request, exc: EdgeloopError) -> JSONResponse:
        status = 400 if isinstance(exc, InputError) else 401 if isinstance(exc, AuthError) else 500
        return JSONResponse({"detail": str(exc)}, status_code=status)

    # --- helpers shared by the handlers ----------------------------------------------------

    def device_call(request: Request, body: bytes, work: Callable[[Session, DeviceRow], T]) -> T:
        """Authenticate the signed request and run ``work`` in the same transaction."""
        if len(body) > settings.report_limit_bytes:
            raise Refused(
                413,
                "too_large",
                f"body of {len(body)} bytes; at most {settings.report_limit_bytes}",
            )
        try:
            sig = parse_signature_headers(request.headers)
        except AuthError as e:
            raise Refused(401, "bad_headers", str(e)) from e
        with write_session(engine) as s:
            device = store.authenticate(
                s,
                sig,
                request.method,
                signed_path(request),
                body,
                now=utc_now(),
                max_skew_s=settings.max_skew_s,
            )
            return work(s, device)

    # --- public ----------------------------------------------------------------------------

    @app.get("/healthz", summary="Readiness: the database answers")
    def healthz() -> dict[str, str]:
        with read_session(engine) as s:
            s.execute(sa.text("SELECT 1"))
        return {"status": "ok", "version": __version__}

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response)
    def prometheus() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    # --- devices ---------------------------------------------------------------------------

    @app.post(
        "/v1/enroll",
        status_code=201,
        summary="Enroll with a one-time token",
        openapi_extra=JSON_BODY,
    )
    def enroll(request: Request, body: bytes = Depends(raw_body)) -> dict[str, Any]:
        req = parse_body(EnrollRequest, body)
        try:
            sig = parse_signature_headers(request.headers)
            if sig.device_id != ENROLL_DEVICE_ID:
                raise AuthError(
                    f"enrollment must be signed as device {ENROLL_DEVICE_ID!r}, "
                    f"got {sig.device_id!r}"
                )
            verify_request(
                sig,
                ed25519_from_hex(req.signing_key),
                request.method,
                signed_path(request),
                body,
                now=time.time(),
                max_skew_s=settings.max_skew_s,
            )
        except EdgeloopError as e:
            raise Refused(401, "bad_signature", str(e)) from e
        now = utc_now()
        with write_session(engine) as s:
            device = store.enroll(s, req, now)
            device_id = device.id
        return Enrollment(
            device_id=device_id,
            director_key=director_key_dict,
            director_keyid=public_key_id(secrets_.director_key),
            tuf_root=json.loads(secrets_.keyring.root_bytes()),
            poll_interval_s=settings.poll_interval_s,
            server_time=iso_time(now),
        ).to_dict()

    @app.post(
        "/v1/checkin", summary="Report state; get the signed assignment", openapi_extra=JSON_BODY
    )
    def checkin(request: Request, body: bytes = Depends(raw_body)) -> dict[str, Any]:
        def work(s: Session, device: DeviceRow) -> dict[str, Any]:
            report = parse_body(CheckIn, body)
            now = utc_now()
            store.record_checkin(device, report, now)
            policy = policy_loader(s) if policy_loader is not None else default_policy
            assignment = direct(
                store.device_state(device),
                store.fleet_state(s, device, settings.alias),
                now=now,
                ttl=ttl,
                policy=policy,
            )
            envelope = None
            if assignment is not None:
                envelope = sign_assignment(assignment, secrets_.director_key)
                metrics.assignments.labels(assignment.model, str(assignment.version)).inc()
            return CheckInResponse(
                device_id=device.id,
                assignment=envelope,
                poll_interval_s=settings.poll_interval_s,
                server_time=iso_time(now),
            ).to_dict()

        return device_call(request, body, work)

    @app.post(
        "/v1/telemetry", status_code=202, summary="Ingest a DeviceReport", openapi_extra=JSON_BODY
    )
    def telemetry(request: Request, body: bytes = Depends(raw_body)) -> dict[str, int]:
        def work(s: Session, device: DeviceRow) -> dict[str, int]:
            report = parse_body(DeviceReport, body)
            if report.device_id != device.id:
                raise Refused(
                    403,
                    "other_device",
                    f"report for device {report.device_id!r} signed by {device.id!r}",
                )
            # one report in ~32 also sweeps this device's reports past the retention
            sweep = secrets.randbelow(32) == 0
            store.record_report(s, device, report, utc_now(), keep=retention if sweep else None)
            return {"accepted": 1}

        return device_call(request, body, work)

    @app.post(
        "/v1/keys", summary="A bundle's data key wrapped for this device", openapi_extra=JSON_BODY
    )
    def data_key(request: Request, body: bytes = Depends(raw_body)) -> dict[str, Any]:
        def work(s: Session, device: DeviceRow) -> dict[str, Any]:
            req = parse_body(KeyRequest, body)
            variant = store.variant_by_target(s, req.target)
            if variant is None:
                raise Refused(
                    404, "not_found", f"target {req.target!r} is not part of a published release"
                )
            entry = rewrap_for_device(variant, secrets_.fleet_keys, device.encryption_key)
            return WrappedKey(target=req.target, recipient=entry).to_dict()

        return device_call(request, body, work)

    app.include_router(admin_router(ctx))
    app.include_router(rollouts.router())
    app.include_router(dashboard_router(ctx))
    for router in routers:
        app.include_router(router)
    app.mount("/tuf", StaticFiles(directory=settings.tuf_path, check_dir=True), name="tuf")
    return app


def app_from_env() -> FastAPI:
    """The app for ``$EDGELOOP_FLEET_SETTINGS`` (uvicorn's factory when running workers)."""
    import os

    text = os.environ.get(SETTINGS_ENV)
    if not text:
        raise InputError(f"${SETTINGS_ENV} is not set; run `edgeloop server` instead")
    return create_app(settings_from_env(text))
