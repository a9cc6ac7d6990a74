"""The fleet server: ``create_app(settings) -> FastAPI`` (protocol in docs/fleet-protocol.md).

``create_app`` only assembles: it opens the database, builds the typed app state
(:class:`~edgeloop.fleet._state.AppState`, at ``app.state.fleet``) and includes the routers, each
in a module of its own: the device API (``_device_api``), the admin API (``_admin``), rollouts
(``_rollout_api``) and the dashboard (``_dashboard``). Handlers are thin: parse the body into a
protocol dataclass, open one transaction, call the store, the director or the publisher, answer.
Process memory holds settings, keys, metrics and caches that the database keeps right (the
assignments this process signed, per device; docs/scale.md), so several processes can serve
one database and data dir.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from edgeloop import __version__
from edgeloop.db import make_engine, read_session, upgrade, write_session
from edgeloop.errors import EdgeloopError, InputError
from edgeloop.fleet import _store as store
from edgeloop.fleet._admin import admin_router
from edgeloop.fleet._batch import CheckinWriter
from edgeloop.fleet._dashboard import dashboard_router
from edgeloop.fleet._device_api import DeviceRoutes, device_router, mount_tuf
from edgeloop.fleet._http import ServerContext, error_response, utc_now
from edgeloop.fleet._limits import BodyLimit
from edgeloop.fleet._metrics import CONTENT_TYPE, FleetMetrics
from edgeloop.fleet._monitor_api import Monitor
from edgeloop.fleet._publish import refresh_timestamp_if_due
from edgeloop.fleet._rollout_api import Rollouts
from edgeloop.fleet._settings import FleetSettings, prepare_data_dir, settings_from_env
from edgeloop.fleet._signed import DeltaListing, FleetStates, SignedAssignments
from edgeloop.fleet._state import AppState, PolicyLoader, app_state
from edgeloop.registry import BlobStore
from edgeloop.update import Repository

__all__ = ["app_from_env", "create_app"]

_TIMESTAMP_CHECK_S = 600.0

_log = logging.getLogger("edgeloop.fleet")

_public = APIRouter()


@_public.get("/healthz", summary="Readiness: the database answers")
def healthz(app: AppState = Depends(app_state)) -> dict[str, str]:
    with read_session(app.ctx.engine) as s:
        s.execute(sa.text("SELECT 1"))
    return {"status": "ok", "version": __version__}


@_public.get("/metrics", summary="Prometheus metrics", response_class=Response)
def prometheus(app: AppState = Depends(app_state)) -> Response:
    return Response(app.metrics.render(), media_type=CONTENT_TYPE)


def create_app(
    settings: FleetSettings,
    *,
    policy_loader: PolicyLoader | None = None,
    routers: Sequence[APIRouter] = (),
) -> FastAPI:
    """The fleet server for ``settings``; secrets in the data dir are created if missing.

    ``policy_loader`` gives the director another policy per check-in (staged rollouts read
    their state from the check-in's session); ``routers`` add pages or APIs (a dashboard).
    Routes find the engine, settings, secrets and repository in ``app.state.ctx`` and the
    metrics and policy in ``app.state.fleet`` (:func:`~edgeloop.fleet._state.app_state`).
    """
    secrets = prepare_data_dir(settings)
    engine = make_engine(settings.db_url, **_pool_options(settings.db_url))
    if engine.dialect.name != "sqlite":
        _ping_idle_connections(engine)
    if settings.migrate:
        upgrade(engine)
    repo = Repository(settings.tuf_path, secrets.keyring)
    ctx = ServerContext(settings, engine, secrets, BlobStore(settings.registry_path), repo)
    rollouts = Rollouts(ctx)  # staged rollouts: the default policy, an admin API, a driver
    monitor = Monitor(ctx)  # drift, accuracy and alerts from device sketches

    def count_devices() -> dict[str, int]:
        with read_session(engine) as s:
            return store.device_counts(s, utc_now(), ctx.stale_after)

    state = AppState(
        ctx,
        FleetMetrics(count_devices),
        policy_loader or rollouts.policy,
        CheckinWriter(engine, nonce_ttl=timedelta(seconds=2 * settings.max_skew_s)),
        SignedAssignments(),
        FleetStates(settings.alias),
        DeltaListing(settings.tuf_path, ctx.secrets.keyring),
    )
    app = FastAPI(
        title="edgeloop fleet server",
        version=__version__,
        description="Enrollment, signed assignments, TUF repository, telemetry and inventory "
        "for a fleet of edge devices. Wire protocol: docs/fleet-protocol.md.",
        lifespan=_lifespan(rollouts, monitor),
    )
    app.state.ctx = ctx
    app.state.fleet = state
    app.state.monitor = monitor
    app.add_middleware(DeviceRoutes)  # the check-in and telemetry as plain ASGI, measured
    app.add_middleware(_Measure)
    # outermost: bodies are counted as they stream in, before any route or authentication
    app.add_middleware(BodyLimit, limit=settings.report_limit_bytes)
    app.add_exception_handler(store.Refused, _refused)  # type: ignore[arg-type]
    app.add_exception_handler(EdgeloopError, _refused)  # type: ignore[arg-type]
    for router in (
        _public,
        device_router,
        admin_router(ctx),
        rollouts.router(),
        monitor.router(),
        dashboard_router(ctx),
        *routers,
    ):
        app.include_router(router)
    mount_tuf(app, settings.tuf_path)
    return app


def _lifespan(
    rollouts: Rollouts, monitor: Monitor
) -> Callable[[FastAPI], contextlib.AbstractAsyncContextManager[None]]:
    """The server's background work: keep the TUF timestamp fresh, drive the rollouts and
    evaluate the monitoring sketches."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        ctx: ServerContext = app.state.ctx
        retry_s = min(_TIMESTAMP_CHECK_S, 60.0)

        def refresh_timestamp() -> None:
            with write_session(ctx.engine) as s:
                refresh_timestamp_if_due(s, ctx.repo, utc_now())

        async def keep_timestamp_fresh() -> None:
            while True:
                try:
                    await asyncio.to_thread(refresh_timestamp)
                except Exception:  # logged, retried at the next check: devices go stale else
                    _log.exception("TUF timestamp refresh failed; retrying in %.0f s", retry_s)
                    await asyncio.sleep(retry_s)
                    continue
                await asyncio.sleep(_TIMESTAMP_CHECK_S)

        tasks = [
            asyncio.create_task(keep_timestamp_fresh()),
            asyncio.create_task(rollouts.run()),
            asyncio.create_task(monitor.run()),
        ]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            ctx.engine.dispose()

    return lifespan


class _Measure:
    """Count and time every request by route (``/tuf`` files count as one route).

    Pure ASGI: Starlette's ``BaseHTTPMiddleware`` (``@app.middleware("http")``) runs each
    request in a task group with memory streams, a measurable part of a check-in's CPU
    (docs/scale.md)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # an exception that escapes the routes becomes a 500 further out

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            metrics: FleetMetrics = scope["app"].state.fleet.metrics
            route = scope.get("route")  # the router sets it in this same scope
            path = str(scope.get("path", ""))
            endpoint = getattr(route, "path", None) or (
                "/tuf" if path.startswith("/tuf/") else "other"
            )
            metrics.served(endpoint, status, time.perf_counter() - start)


def _pool_options(db_url: str) -> dict[str, Any]:
    """The engine's connection pool, sized for the request threads (AnyIO's 40 by default):
    a connection beyond the pool's size is opened for one request and closed after it (on
    SQLite with the engine's PRAGMAs each time), which was a tenth of a check-in's CPU under
    load. A SQLite file needs no liveness ping; a database server's idle connections are
    pinged (:func:`_ping_idle_connections`)."""
    url = sa.make_url(db_url)
    if url.get_backend_name() == "sqlite":
        in_memory = url.database in (None, "", ":memory:")  # a single-connection pool there
        return {} if in_memory else {"pool_size": 40, "max_overflow": 10}
    return {"pool_size": 20, "max_overflow": 20}


_IDLE_PING_S = 10.0


def _ping_idle_connections(engine: sa.Engine) -> None:
    """Check a database server's connection before use when it sat idle for over 10 s.

    SQLAlchemy's ``pool_pre_ping`` pings on every checkout: a round trip per transaction,
    four per poll, and on PostgreSQL each ping (``SELECT 1`` in autocommit) counts as a
    committed transaction, tripling the commits per check-in. Under load connections are
    reused within milliseconds and a ping buys nothing; a connection that waited (the
    database may have restarted meanwhile) is pinged, and a dead one is replaced before the
    request uses it. A restart while connections are busy fails those requests once (the
    device polls again); SQLAlchemy then renews the whole pool."""

    @sa.event.listens_for(engine, "checkin")
    def _returned(_dbapi: Any, record: Any) -> None:
        record.info["returned_at"] = time.monotonic()

    @sa.event.listens_for(engine, "checkout")
    def _checked_out(dbapi: Any, record: Any, _proxy: Any) -> None:
        returned = record.info.get("returned_at")
        if returned is None or time.monotonic() - returned < _IDLE_PING_S:
            return
        try:
            engine.dialect.do_ping(dbapi)
        except Exception as e:  # the pool replaces the connection and checks out again
            raise sa.exc.DisconnectionError(f"idle connection is dead: {e}") from e


async def _refused(request: Request, exc: EdgeloopError) -> JSONResponse:
    """A refusal is a 4xx with its reason (auth refusals counted); other errors raised on
    purpose are 400, 401 or 500 (:func:`~edgeloop.fleet._http.error_response`)."""
    return error_response(exc, request.app.state.fleet.metrics.auth_failures)


def app_from_env() -> FastAPI:
    """The app for ``$EDGELOOP_FLEET_SETTINGS`` (uvicorn's factory when running workers)."""
    import os

    from edgeloop.fleet._settings import SETTINGS_ENV

    text = os.environ.get(SETTINGS_ENV)
    if not text:
        raise InputError(f"${SETTINGS_ENV} is not set; run `edgeloop server` instead")
    return create_app(settings_from_env(text))
