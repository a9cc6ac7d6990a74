"""Small request helpers shared by the device and admin routes, and the server's context."""

from __future__ import annotations

import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar

from fastapi import Request
from prometheus_client import Counter
from sqlalchemy.engine import Engine
from starlette.responses import JSONResponse

from edgeloop.artifacts import Artifact
from edgeloop.errors import AuthError, EdgeloopError, InputError
from edgeloop.fleet._settings import FleetSecrets, FleetSettings
from edgeloop.fleet._store import Refused
from edgeloop.registry import BlobStore
from edgeloop.update import Repository

__all__ = [
    "JSON_BODY",
    "ServerContext",
    "admin_token_ok",
    "error_response",
    "json_object",
    "utc_now",
    "parse_body",
    "raw_body",
    "require_admin",
    "scope_path",
    "signed_path",
    "version_of",
]

A = TypeVar("A", bound=Artifact)

# Routes read their raw body (signatures cover its exact bytes); this documents it in OpenAPI.
JSON_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"type": "object"}}},
    }
}


@dataclass(frozen=True)
class ServerContext:
    """What every route needs (``app.state.ctx``); all of it is configuration, not state."""

    settings: FleetSettings
    engine: Engine
    secrets: FleetSecrets
    blobs: BlobStore
    repo: Repository

    @property
    def stale_after(self) -> timedelta:
        """A device not heard from for three poll intervals is offline."""
        return timedelta(seconds=3 * self.settings.poll_interval_s)


def admin_token_ok(ctx: ServerContext, token: str) -> bool:
    """Whether ``token`` is the admin token (constant-time, surrounding blanks ignored)."""
    return hmac.compare_digest(token.strip().encode(), ctx.secrets.admin_token.encode())


def require_admin(request: Request) -> None:
    """The one admin check: a FastAPI dependency on every ``/v1/admin/...`` router.

    401 unless the request carries ``Authorization: Bearer <admin token>``.
    """
    ctx: ServerContext = request.app.state.ctx
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not admin_token_ok(ctx, token):
        raise Refused(401, "admin", "admin API needs 'Authorization: Bearer <admin token>'")


def error_response(exc: EdgeloopError, auth_failures: Counter) -> JSONResponse:
    """The answer to an error a route raised on purpose: a :class:`Refused` is its status with
    its reason (401 and 403 counted in ``auth_failures`` by reason); any other
    :class:`EdgeloopError` is a 400 (bad input), 401 (authentication) or 500."""
    if isinstance(exc, Refused):
        if exc.status in (401, 403):
            auth_failures.labels(exc.reason).inc()
        headers = {"WWW-Authenticate": "Bearer"} if exc.reason == "admin" else None
        return JSONResponse({"detail": str(exc)}, status_code=exc.status, headers=headers)
    status = 400 if isinstance(exc, InputError) else 401 if isinstance(exc, AuthError) else 500
    return JSONResponse({"detail": str(exc)}, status_code=status)


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def _json(body: bytes) -> object:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:  # Recursion: too deep
        raise Refused(400, "bad_body", f"request body is not JSON ({e})") from e


def json_object(body: bytes) -> dict[str, Any]:
    data = _json(body)
    if not isinstance(data, dict):
        raise Refused(400, "bad_body", f"request body: expected a JSON object, got {data!r:.40}")
    return data


def parse_body(cls: type[A], body: bytes) -> A:
    """The body as a protocol dataclass; 400 naming the field when it is not one."""
    try:
        return cls.from_dict(_json(body))  # type: ignore[arg-type]
    except InputError as e:
        raise Refused(400, "bad_body", str(e)) from e


def version_of(body: bytes, *, with_model: bool = False) -> tuple[str, int]:
    """``{"version": 3}`` (and ``"model"`` when asked) from an admin request body."""
    data = _json(body)
    fields = data if isinstance(data, dict) else {}
    model = fields.get("model", "")
    if with_model and (not isinstance(model, str) or not model):
        raise Refused(400, "bad_body", f"model {model!r}: expected a model name")
    version = fields.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        raise Refused(400, "bad_body", f"version {version!r}: expected an int >= 0")
    return str(model), version


def signed_path(request: Request) -> str:
    """The path as the client sent it (with its query): what a device signature covers."""
    return scope_path(request.scope)


def scope_path(scope: Mapping[str, Any]) -> str:
    """:func:`signed_path` of an ASGI scope (the device API's plain ASGI routes)."""
    raw = scope.get("raw_path")
    path = raw.decode("latin-1") if isinstance(raw, bytes | bytearray) else str(scope["path"])
    query = scope.get("query_string", b"")
    return f"{path}?{query.decode('latin-1')}" if query else path


async def raw_body(request: Request) -> bytes:
    """The body bytes (signatures cover them exactly); 413 past the size limit."""
    declared = request.headers.get("content-length", "")
    limit = request.app.state.ctx.settings.report_limit_bytes
    if declared.isdigit() and int(declared) > limit:
        raise Refused(413, "too_large", f"body of {declared} bytes; at most {limit}")
    return await request.body()
