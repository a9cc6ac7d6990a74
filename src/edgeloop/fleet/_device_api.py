"""The device API: enrollment, check-in, telemetry, data keys, and the TUF repository.

Every route but enrollment is signed by an enrolled device (:func:`_device_call` checks the
signature and runs the work in the same transaction); enrollment is signed with the key it
enrolls and carries a one-time token. The TUF metadata and targets are static files
(:func:`mount_tuf`). The wire format is ``edgeloop.protocol``; docs/fleet-protocol.md.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.staticfiles import StaticFiles
from sqlalchemy.orm import Session

from edgeloop.artifacts import DeviceReport
from edgeloop.db import DeviceRow, write_session
from edgeloop.errors import AuthError, EdgeloopError
from edgeloop.fleet import _monitor_store as monitor_store
from edgeloop.fleet import _store as store
from edgeloop.fleet._director import direct
from edgeloop.fleet._http import JSON_BODY, parse_body, raw_body, signed_path, utc_now
from edgeloop.fleet._publish import rewrap_for_device
from edgeloop.fleet._state import AppState, app_state
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
    public_key_id,
    sign_assignment,
    verify_request,
)

__all__ = ["device_router", "mount_tuf"]

T = TypeVar("T")

device_router = APIRouter(tags=["device"])


def _device_call(
    app: AppState, request: Request, body: bytes, work: Callable[[Session, DeviceRow], T]
) -> T:
    """Authenticate the signed request and run ``work`` in the same transaction."""
    settings = app.ctx.settings
    if len(body) > settings.report_limit_bytes:
        raise Refused(
            413, "too_large", f"body of {len(body)} bytes; at most {settings.report_limit_bytes}"
        )
    try:
        sig = parse_signature_headers(request.headers)
    except AuthError as e:
        raise Refused(401, "bad_headers", str(e)) from e
    with write_session(app.ctx.engine) as s:
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


@device_router.post(
    "/v1/enroll", status_code=201, summary="Enroll with a one-time token", openapi_extra=JSON_BODY
)
def enroll(
    request: Request, body: bytes = Depends(raw_body), app: AppState = Depends(app_state)
) -> dict[str, Any]:
    ctx = app.ctx
    req = parse_body(EnrollRequest, body)
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


@device_router.post(
    "/v1/checkin", summary="Report state; get the signed assignment", openapi_extra=JSON_BODY
)
def checkin(
    request: Request, body: bytes = Depends(raw_body), app: AppState = Depends(app_state)
) -> dict[str, Any]:
    settings = app.ctx.settings

    def work(s: Session, device: DeviceRow) -> dict[str, Any]:
        report = parse_body(CheckIn, body)
        now = utc_now()
        store.record_checkin(device, report, now)
        assignment = direct(
            store.device_state(device),
            store.fleet_state(s, device, settings.alias),
            now=now,
            ttl=app.assignment_ttl,
            policy=app.policy_loader(s),
        )
        envelope = None
        if assignment is not None:
            envelope = sign_assignment(assignment, app.ctx.secrets.director_key)
            app.metrics.assignments.labels(assignment.model, str(assignment.version)).inc()
        return CheckInResponse(
            device_id=device.id,
            assignment=envelope,
            poll_interval_s=settings.poll_interval_s,
            server_time=iso_time(now),
        ).to_dict()

    return _device_call(app, request, body, work)


@device_router.post(
    "/v1/telemetry", status_code=202, summary="Ingest a DeviceReport", openapi_extra=JSON_BODY
)
def telemetry(
    request: Request, body: bytes = Depends(raw_body), app: AppState = Depends(app_state)
) -> dict[str, int]:
    def work(s: Session, device: DeviceRow) -> dict[str, int]:
        report = parse_body(DeviceReport, body)
        if report.device_id != device.id:
            raise Refused(
                403,
                "other_device",
                f"report for device {report.device_id!r} signed by {device.id!r}",
            )
        now = utc_now()
        # one report in ~32 also sweeps this device's reports past the retention
        sweep = secrets.randbelow(32) == 0
        _record_sketch(app, s, device, report, now, sweep)  # before the report: a refusal
        store.record_report(s, device, report, now, keep=app.report_retention if sweep else None)
        return {"accepted": 1}

    return _device_call(app, request, body, work)


def _record_sketch(
    app: AppState, s: Session, device: DeviceRow, report: DeviceReport, now: Any, sweep: bool
) -> None:
    """The report's optional monitoring sketch, validated against the reference of the version
    the report names (400 with the reason otherwise; nothing of the report is stored then)."""
    settings = app.ctx.settings
    keep = timedelta(seconds=settings.monitor_retention_s) if sweep else None
    monitor_store.record_sketch(
        s, device, report, now, window_s=settings.monitor_window_s, keep=keep
    )


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
        entry = rewrap_for_device(variant, app.ctx.secrets.fleet_keys, device.encryption_key)
        return WrappedKey(target=req.target, recipient=entry).to_dict()

    return _device_call(app, request, body, work)


def mount_tuf(app: FastAPI, tuf_path: Path) -> None:
    """Serve the TUF repository's metadata and targets as static files under ``/tuf``."""
    app.mount("/tuf", StaticFiles(directory=tuf_path, check_dir=True), name="tuf")
