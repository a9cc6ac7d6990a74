"""The device API: enrollment, check-in, telemetry, data keys, and the TUF repository.

Every route but enrollment is signed by an enrolled device (:func:`_device_call` checks the
signature and runs the work in the same transaction); enrollment is signed with the key it
enrolls and carries a one-time token. The TUF metadata and targets are static files
(:func:`mount_tuf`). The wire format is ``edgeloop.protocol``; docs/fleet-protocol.md.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from anyio import to_thread
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from sqlalchemy import event
from sqlalchemy.orm import Session
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from edgeloop.artifacts import DeviceReport
from edgeloop.db import DeviceRow, ReleaseRow, VariantRow, read_session, write_session
from edgeloop.errors import AuthError, EdgeloopError
from edgeloop.fleet import _monitor_store as monitor_store
from edgeloop.fleet import _store as store
from edgeloop.fleet._batch import Telemetry
from edgeloop.fleet._director import FleetState, direct
from edgeloop.fleet._http import (
    JSON_BODY,
    error_response,
    json_object,
    parse_body,
    raw_body,
    scope_path,
    signed_path,
    utc_now,
)
from edgeloop.fleet._publish import rewrap_for_device
from edgeloop.fleet._signed import KnownDevice
from edgeloop.fleet._state import AppState, app_state
from edgeloop.fleet._store import Refused
from edgeloop.fleet._telemetry import validate_report
from edgeloop.protocol import (
    ENROLL_DEVICE_ID,
    Assignment,
    CheckIn,
    CheckInResponse,
    Enrollment,
    EnrollRequest,
    KeyRequest,
    RequestSignature,
    WrappedKey,
    ed25519_from_hex,
    iso_time,
    parse_signature_headers,
    public_key_id,
    verify_request,
)

__all__ = ["DeviceRoutes", "device_router", "mount_tuf"]

T = TypeVar("T")

device_router = APIRouter(tags=["device"])


@dataclass(frozen=True)
class _Call:
    """What a device's signature covers besides the body: the method, the path as sent (with
    its query) and the headers that carry the signature; from a FastAPI request or, on the
    plain ASGI routes (:class:`DeviceRoutes`), from the ASGI scope."""

    method: str
    path: str
    headers: Mapping[str, str]


def _call(request: Request) -> _Call:
    return _Call(request.method, signed_path(request), request.headers)


def _signature(app: AppState, call: _Call, body: bytes) -> RequestSignature:
    """The request's signature headers, once its size is known to be within the limit."""
    limit = app.ctx.settings.report_limit_bytes
    if len(body) > limit:
        raise Refused(413, "too_large", f"body of {len(body)} bytes; at most {limit}")
    try:
        return parse_signature_headers(call.headers)
    except AuthError as e:
        raise Refused(401, "bad_headers", str(e)) from e


def _device_call(
    app: AppState, call: _Call, body: bytes, work: Callable[[Session, DeviceRow], T]
) -> T:
    """Authenticate the signed request and run ``work`` in the same transaction."""
    settings = app.ctx.settings
    sig = _signature(app, call, body)
    with write_session(app.ctx.engine) as s:
        device = store.authenticate(
            s,
            sig,
            call.method,
            call.path,
            body,
            now=utc_now(),
            max_skew_s=settings.max_skew_s,
        )
        return work(s, device)


@device_router.post(
    "/v1/enroll", status_code=201, summary="Enroll with a one-time token", openapi_extra=JSON_BODY
)
def enroll(
    request: Request, body: bytes = Depends(raw_body), app: AppState = Depends(app_state)
) -> dict[str, Any]:
    ctx = app.ctx
    req = parse_body(EnrollRequest, body)
    _check_build(app, req.agent_build)
    try:
        sig = parse_signature_headers(request.headers)
        if sig.device_id != ENROLL_DEVICE_ID:
            raise AuthError(
                f"enrollment must be signed as device {ENROLL_DEVICE_ID!r}, got {sig.device_id!r}"
            )
        verify_request(
            sig,
            ed25519_from_hex(req.signing_key),
            request.method,
            signed_path(request),
            body,
            now=time.time(),
            max_skew_s=ctx.settings.max_skew_s,
        )
    except EdgeloopError as e:
        raise Refused(401, "bad_signature", str(e)) from e
    now = utc_now()
    with write_session(ctx.engine) as s:
        device_id = store.enroll(s, req, now).id
    return Enrollment(
        device_id=device_id,
        director_key=app.director_key,
        director_keyid=public_key_id(ctx.secrets.director_key),
        tuf_root=json.loads(ctx.secrets.keyring.root_bytes()),
        poll_interval_s=ctx.settings.poll_interval_s,
        server_time=iso_time(now),
    ).to_dict()


def _verified(
    s: Session,
    app: AppState,
    call: _Call,
    body: bytes,
    sig: RequestSignature,
    now: datetime,
    generation: int | None,
) -> KnownDevice:
    """The signed request's device, checked in the caller's read session (signature, clock
    skew, revocation) from what this process keeps of it while ``generation`` (the database's
    counter, read in this session) has not moved; the nonce is left to the group commit,
    which refuses a replay."""
    device = app.devices.get(s, sig.device_id, generation)
    if device is None:
        raise Refused(401, "unknown_device", f"device {sig.device_id!r} is not enrolled here")
    store.verify_signature(
        sig,
        device.key,
        device.revoked,
        call.method,
        call.path,
        body,
        now=now,
        max_skew_s=app.ctx.settings.max_skew_s,
    )
    return device


@device_router.post(
    "/v1/checkin", summary="Report state; get the signed assignment", openapi_extra=JSON_BODY
)
def checkin(
    request: Request, body: bytes = Depends(raw_body), app: AppState = Depends(app_state)
) -> dict[str, Any]:
    """The signed check-in (:func:`_checkin`; served by :class:`DeviceRoutes`, this route is
    its OpenAPI entry and the path behind a ``root_path``)."""
    return _checkin(app, _call(request), body)


def _checkin(app: AppState, call: _Call, body: bytes) -> dict[str, Any]:
    """Authenticate and direct in one read transaction; the nonce and the reported state go to
    the group commit (``_batch``), which refuses a replay before anything is answered; an
    assignment the device already holds is answered ``unchanged`` (``_signed``).

    A check-in whose director policy writes (a rollout's controls recording that a stage
    device was admitted, or how its install went) takes the one-transaction path instead:
    nonce, device state and the policy's rows commit together, as before the group commit."""
    sig = _signature(app, call, body)
    now = utc_now()
    with read_session(app.ctx.engine) as s:
        generation = app.fleet_states.generation(s)
        device = _verified(s, app, call, body, sig, now, generation)
        report = parse_body(CheckIn, body)
        _check_build(app, report.agent_build)
        fleet = app.fleet_states.get(s, device, generation)
        if app.deltas is not None:
            fleet = app.deltas.apply(fleet)
        try:
            with _read_only(s):
                assignment = direct(
                    store.checkin_state(device, report, device.device_profile),
                    fleet,
                    now=now,
                    ttl=app.assignment_ttl,
                    policy=app.policy_loader(s),
                )
        except _PolicyWrites:
            s.rollback()
            return _checkin_in_one_transaction(app, call, body, fleet)
        device_id = device.id
    if not app.writer.submit(device_id, sig.nonce, now, store.checkin_columns(report, now)):
        raise store.replay(device_id, sig.nonce)
    return _answer(app, device_id, assignment, report, now)


class _PolicyWrites(Exception):
    """The director's policy wrote in the check-in's read transaction."""


_READ_ONLY = "edgeloop_read_only"


@event.listens_for(Session, "before_flush")
def _refuse_flush(session: Session, *_: Any) -> None:
    """One listener for every session, registered once (adding and removing a listener per
    check-in was a measurable share of its CPU): a flush inside :func:`_read_only` raises."""
    if session.info.get(_READ_ONLY):
        raise _PolicyWrites


@contextlib.contextmanager
def _read_only(s: Session) -> Iterator[None]:
    """Raise :class:`_PolicyWrites` when the block adds, changes or flushes anything."""
    s.info[_READ_ONLY] = True
    try:
        yield
        if s.new or s.dirty or s.deleted:
            raise _PolicyWrites
    finally:
        s.info.pop(_READ_ONLY, None)


def _checkin_in_one_transaction(
    app: AppState, call: _Call, body: bytes, fleet: FleetState
) -> dict[str, Any]:
    def work(s: Session, device: DeviceRow) -> dict[str, Any]:
        report = parse_body(CheckIn, body)
        now = utc_now()
        store.record_checkin(device, report, now)
        assignment = direct(
            store.device_state(device),
            fleet,
            now=now,
            ttl=app.assignment_ttl,
            policy=app.policy_loader(s),
        )
        return _answer(app, device.id, assignment, report, now)

    return _device_call(app, call, body, work)


def _answer(
    app: AppState, device_id: str, assignment: Assignment | None, report: CheckIn, now: datetime
) -> dict[str, Any]:
    envelope = None
    unchanged = False
    if assignment is not None:
        signed = app.signed.sign(assignment, app.ctx.secrets.director_key, now)
        unchanged = signed.sha256 == report.assignment_sha256
        envelope = None if unchanged else signed.envelope
        app.metrics.assignments.labels(assignment.model, str(assignment.version)).inc()
    return CheckInResponse(
        device_id=device_id,
        assignment=envelope,
        poll_interval_s=app.ctx.settings.poll_interval_s,
        server_time=iso_time(now),
        unchanged=unchanged,
    ).to_dict()


@device_router.post(
    "/v1/telemetry", status_code=202, summary="Ingest a DeviceReport", openapi_extra=JSON_BODY
)
def telemetry(
    request: Request, body: bytes = Depends(raw_body), app: AppState = Depends(app_state)
) -> dict[str, int]:
    """A signed telemetry report (:func:`_telemetry`; served by :class:`DeviceRoutes`, this
    route is its OpenAPI entry and the path behind a ``root_path``)."""
    return _telemetry(app, _call(request), body)


def _telemetry(app: AppState, call: _Call, body: bytes) -> dict[str, int]:
    """Authenticate and validate in one read transaction (the report, and its sketch against
    its version's reference: a refusal stores nothing); the nonce, the report's row, its
    sketch and ``last_seen`` go to the group commit with the check-ins' writes (``_batch``),
    which refuses a replay; the answer comes once they are committed."""
    settings = app.ctx.settings
    sig = _signature(app, call, body)
    now = utc_now()
    with read_session(app.ctx.engine) as s:
        device = _verified(s, app, call, body, sig, now, app.fleet_states.generation(s))
        report = parse_body(DeviceReport, body)
        if report.device_id != device.id:
            raise Refused(
                403,
                "other_device",
                f"report for device {report.device_id!r} signed by {device.id!r}",
            )
        validate_report(report)
        sketch = monitor_store.check_sketch(
            s, device, report, now, window_s=settings.monitor_window_s
        )
        device_id = device.id
    # one report in ~32 also sweeps this device's reports and sketches past their retention
    sweep = secrets.randbelow(32) == 0
    writes = Telemetry(
        report=store.report_row(device_id, report, now),
        sketch=sketch,
        reports_before=now - app.report_retention if sweep else None,
        sketches_before=now - timedelta(seconds=settings.monitor_retention_s) if sweep else None,
    )
    if not app.writer.submit(device_id, sig.nonce, now, {"last_seen": now}, writes):
        raise store.replay(device_id, sig.nonce)
    return {"accepted": 1}


class DeviceRoutes:
    """The two requests every device sends each poll, the signed check-in and telemetry
    report, served as plain ASGI in front of FastAPI (a middleware inside the body limit and
    the metrics).

    FastAPI's way to the same handler (its exception and exit-stack middlewares, routing
    through every route of the app, the dependencies, a ``Request``, the answer's validation
    against the return annotation) was over half of a check-in's server CPU with the handler
    itself a third (docs/scale.md). This path reads the body that :class:`~edgeloop.fleet.
    _limits.BodyLimit` hands on (already within the limit), runs the same handler
    (:func:`_checkin`, :func:`_telemetry`) in AnyIO's worker threads as FastAPI runs a sync
    route, and answers what FastAPI answered: the same JSON bytes and status, the same error
    bodies (:func:`~edgeloop.fleet._http.error_response`), and an exception that is no
    ``EdgeloopError`` propagates to the server's 500 as before. Any other request, method or
    path (a ``root_path``, a trailing slash) goes on to FastAPI, whose routes for these two
    paths stay: the OpenAPI schema and the path behind a ``root_path``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = _PLAIN.get(scope.get("path", "")) if scope["type"] == "http" else None
        if route is None or scope["method"] != "POST" or scope.get("root_path"):
            await self.app(scope, receive, send)
            return
        handler, status, scope["route"] = route  # the route's path labels the metrics
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away: nothing to answer
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        headers: dict[str, str] = {}
        for name, value in scope["headers"]:  # the first of a repeated header, as Starlette's
            headers.setdefault(name.decode("latin-1").lower(), value.decode("latin-1"))
        app: AppState = scope["app"].state.fleet
        call = _Call("POST", scope_path(scope), headers)
        response: Response
        try:
            answer = await to_thread.run_sync(handler, app, call, b"".join(chunks))
            response = JSONResponse(answer, status_code=status)
        except EdgeloopError as e:
            response = error_response(e, app.metrics.auth_failures)
        await response(scope, receive, send)


@device_router.post(
    "/v1/keys", summary="A bundle's data key wrapped for this device", openapi_extra=JSON_BODY
)
def data_key(
    request: Request, body: bytes = Depends(raw_body), app: AppState = Depends(app_state)
) -> dict[str, Any]:
    def work(s: Session, device: DeviceRow) -> dict[str, Any]:
        req = parse_body(KeyRequest, body)
        variant = store.variant_by_target(s, req.target)
        if variant is None:
            raise Refused(
                404, "not_found", f"target {req.target!r} is not part of a published release"
            )
        if not _entitled(app, s, device, variant):
            raise Refused(
                403,
                "not_assigned",
                f"target {req.target!r} is neither assigned to this device nor in its slots",
            )
        entry = rewrap_for_device(variant, app.ctx.secrets.fleet_keys, device.encryption_key)
        return WrappedKey(target=req.target, recipient=entry).to_dict()

    return _device_call(app, _call(request), body, work)


def _check_build(app: AppState, build: str | None) -> None:
    """With ``--require-agent-build``, only allow-listed agent builds enroll or check in.

    The hash is what the device says: this stops unapproved or broken installs, not a
    compromised device (docs/security.md, ``edgeloop.agent.Attestor``)."""
    allowed = app.ctx.settings.agent_builds
    if allowed and build not in allowed:
        shown = build[:16] if build else "none"
        raise Refused(403, "agent_build", f"agent build {shown} is not one this server allows")


def _entitled(app: AppState, s: Session, device: DeviceRow, variant: VariantRow) -> bool:
    """Least privilege for data keys: a device gets the key of the target the director assigns
    it now, or of the model it runs or keeps in its known-good slot; never any other."""
    release = s.get(ReleaseRow, variant.release_id)
    if release is None:
        return False
    state = store.device_state(device)
    for slot in (state.installed, state.known_good):
        if (
            slot is not None
            and (slot.model, slot.version) == (release.model, release.version)
            and (slot.sha256 == variant.sha256 or slot.variant == variant.variant)
        ):
            return True
    assignment = direct(
        state,
        store.fleet_state(s, device, app.ctx.settings.alias),
        now=utc_now(),
        ttl=app.assignment_ttl,
        policy=app.policy_loader(s),
    )
    if assignment is not None and assignment.target == variant.target:
        return True
    return _moving_off_a_revocation(app, state, release, variant)


def _moving_off_a_revocation(
    app: AppState, state: Any, release: ReleaseRow, variant: VariantRow
) -> bool:
    """A device whose version the release side revoked moves to the newest version still listed
    (docs/security.md, "Revocation") before the director knows: it may fetch that key, and only
    that one: a version of a model it holds, listed now, while a version it holds is not."""
    held = [slot for slot in (state.installed, state.known_good) if slot is not None]
    if not any(slot.model == release.model for slot in held):
        return False
    from edgeloop.update import Repository

    listed = Repository(app.ctx.settings.tuf_path, app.ctx.secrets.keyring).targets()
    versions: dict[int, set[str]] = {}
    for name, target in listed.items():
        custom = target.unrecognized_fields.get("custom", {})
        if (
            isinstance(custom, dict)
            and custom.get("name") == release.model
            and "delta" not in custom
        ):
            versions.setdefault(int(custom.get("version", 0)), set()).add(name)
    revoked = any(s.model == release.model and s.version not in versions for s in held)
    return revoked and bool(versions) and variant.target in versions[max(versions)]


def mount_tuf(app: FastAPI, tuf_path: Path) -> None:
    """Serve the TUF repository's metadata and targets as static files under ``/tuf``."""
    app.mount("/tuf", StaticFiles(directory=tuf_path, check_dir=True), name="tuf")


@device_router.post(
    "/v1/federated/node-key",
    summary="Store this device's Flower node key binding",
    openapi_extra=JSON_BODY,
)
def federated_node_key(
    request: Request, body: bytes = Depends(raw_body), app: AppState = Depends(app_state)
) -> dict[str, Any]:
    """The body is the device's signed node key binding (``federated.device.bind_node_key``);
    it is kept only when it verifies against the key this device enrolled with."""
    from edgeloop.db import FederatedNodeRow
    from edgeloop.errors import IntegrityError
    from edgeloop.federated.device import verify_node_binding

    def work(s: Session, device: DeviceRow) -> dict[str, Any]:
        binding = json_object(body)
        try:
            public = verify_node_binding(ed25519_from_hex(device.signing_key), binding, device.id)
        except IntegrityError as e:
            raise Refused(400, "bad_binding", str(e)) from e
        row = s.get(FederatedNodeRow, device.id)
        if row is None:
            s.add(FederatedNodeRow(device_id=device.id, binding=binding, updated_at=utc_now()))
        else:
            row.binding, row.updated_at = binding, utc_now()
        return {"accepted": 1, "node_public_key": public}

    return _device_call(app, _call(request), body, work)


@device_router.post(
    "/v1/federated/poll",
    summary="The open deployed federated run this device may join",
    openapi_extra=JSON_BODY,
)
def federated_poll(
    request: Request, body: bytes = Depends(raw_body), app: AppState = Depends(app_state)
) -> dict[str, Any]:
    """``{"run": {"id", "superlink"}}`` for the newest open run whose cohort this device's
    labels match, once the device's node key binding is stored; ``{"run": null}`` otherwise.
    Whether to join is the device's own policy."""
    import sqlalchemy as sa

    from edgeloop.db import FederatedNodeRow, FederatedRunRow

    def work(s: Session, device: DeviceRow) -> dict[str, Any]:
        json_object(body)
        if s.get(FederatedNodeRow, device.id) is None:
            return {"run": None, "reason": "no node key binding stored for this device"}
        runs = s.scalars(
            sa.select(FederatedRunRow)
            .where(FederatedRunRow.closed_at.is_(None))
            .order_by(FederatedRunRow.opened_at.desc())
            .limit(50)
        )
        labels = device.labels or {}
        for run in runs:
            if all(str(labels.get(k)) == str(v) for k, v in (run.cohort or {}).items()):
                return {"run": {"id": run.id, "superlink": run.superlink}}
        return {"run": None, "reason": "no open run for this device's cohort"}

    return _device_call(app, _call(request), body, work)


_PLAIN_HANDLERS = {"/v1/checkin": (_checkin, 200), "/v1/telemetry": (_telemetry, 202)}
# path -> (handler, status, the route whose path labels the request's metrics)
_PLAIN: dict[str, tuple[Callable[[AppState, _Call, bytes], Any], int, APIRoute]] = {
    route.path: (*_PLAIN_HANDLERS[route.path], route)
    for route in device_router.routes
    if isinstance(route, APIRoute) and route.path in _PLAIN_HANDLERS
}
