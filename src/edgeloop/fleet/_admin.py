"""The admin API (``/v1/admin/...``) behind the bearer admin token."""

from __future__ import annotations

import json
import re
from typing import Any

from fastapi import APIRouter, Depends, Request, Response

from edgeloop.bundle import key_id
from edgeloop.db import read_session, write_session
from edgeloop.errors import EdgeloopError
from edgeloop.fleet import _store as store
from edgeloop.fleet._http import (
    JSON_BODY,
    ServerContext,
    json_object,
    parse_body,
    raw_body,
    require_admin,
    utc_now,
    version_of,
)
from edgeloop.fleet._inventory import FILTERS, DeviceQuery, device_page, fleet_counts
from edgeloop.fleet._publish import publish
from edgeloop.fleet._store import Refused
from edgeloop.protocol import TokenRequest, public_hex
from edgeloop.registry import set_alias

__all__ = ["admin_router"]

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,199}")


def admin_router(ctx: ServerContext) -> APIRouter:
    engine, settings = ctx.engine, ctx.settings

    router = APIRouter(prefix="/v1/admin", dependencies=[Depends(require_admin)])

    @router.post(
        "/tokens", status_code=201, openapi_extra=JSON_BODY, summary="Create an enrollment token"
    )
    def create_token(body: bytes = Depends(raw_body)) -> dict[str, Any]:
        req = parse_body(TokenRequest, body or b"{}")
        with write_session(engine) as s:
            return store.create_token(s, req, utc_now()).to_dict()

    @router.get("/devices", summary="Device inventory (filtered and paged when asked)")
    def list_devices(
        request: Request, limit: int | None = None, offset: int = 0
    ) -> dict[str, Any]:
        params = dict(request.query_params)
        if any(k in params for k in FILTERS):
            # the dashboard's device list: filters, a page, counts by state (SQL-side)
            query = DeviceQuery.from_params(params)
            with read_session(engine) as s:
                t = utc_now()
                found = device_page(s, query, t, ctx.stale_after)
                counts = fleet_counts(s, t, ctx.stale_after)
                infos = [
                    {**store.device_info(d, t, ctx.stale_after).to_dict(), "state": row["state"]}
                    for d, row in zip(found.records, found.rows, strict=True)
                ]
            return {
                "devices": infos,
                "matched": found.matched,
                "page": found.page,
                "pages": found.pages,
                "per_page": found.per_page,
                "counts": {k: dict(v) for k, v in counts.items() if k != "total"},
                "total": counts["total"],
            }
        if (limit is not None and limit < 1) or offset < 0:
            raise Refused(400, "bad_query", f"limit {limit}, offset {offset}: expected >= 1, >= 0")
        with read_session(engine) as s:
            t = utc_now()
            rows = store.list_devices(s, limit, offset)
            return {"devices": [store.device_info(d, t, ctx.stale_after).to_dict() for d in rows]}

    @router.get("/devices/{device_id}", summary="One device and its latest reports")
    def get_device(device_id: str) -> dict[str, Any]:
        with read_session(engine) as s:
            device = store.get_device(s, device_id)
            out = store.device_info(device, utc_now(), ctx.stale_after).to_dict()
            out["reports"] = store.recent_reports(s, device_id)
            return out

    @router.patch(
        "/devices/{device_id}",
        openapi_extra=JSON_BODY,
        summary="Change a device's model or labels",
    )
    def update_device(device_id: str, body: bytes = Depends(raw_body)) -> dict[str, Any]:
        change = json_object(body)
        unknown = sorted(set(change) - {"model", "labels"})
        if unknown:
            raise Refused(
                400, "bad_body", f"unknown field(s) {', '.join(unknown)}: expected model, labels"
            )
        model, labels = change.get("model"), change.get("labels", {})
        if model is not None and not (isinstance(model, str) and _NAME.fullmatch(model)):
            raise Refused(400, "bad_body", f"model {model!r}: expected a model name or null")
        if not isinstance(labels, dict) or not all(
            isinstance(k, str) and (v is None or isinstance(v, str)) for k, v in labels.items()
        ):
            raise Refused(400, "bad_body", "labels: expected an object of text (null deletes)")
        with write_session(engine) as s:
            device = store.get_device(s, device_id)
            if "model" in change:
                device.model = model
            merged = {**device.labels, **labels}
            device.labels = {k: v for k, v in merged.items() if v is not None}
            return store.device_info(device, utc_now(), ctx.stale_after).to_dict()

    @router.post("/devices/{device_id}/revoke", summary="Revoke a device")
    def revoke(device_id: str) -> dict[str, Any]:
        with write_session(engine) as s:
            device = store.revoke(s, device_id, utc_now())
            return store.device_info(device, utc_now(), ctx.stale_after).to_dict()

    @router.post(
        "/releases",
        status_code=201,
        openapi_extra=JSON_BODY,
        summary="Publish a registry version's bundles to TUF",
    )
    def create_release(response: Response, body: bytes = Depends(raw_body)) -> dict[str, Any]:
        model, version = version_of(body, with_model=True)
        with write_session(engine) as s:
            release, new = publish(
                s, ctx.blobs, ctx.repo, ctx.secrets.fleet_keys, model, version, utc_now()
            )
        if not new:
            response.status_code = 200
        return release.to_dict()

    @router.get("/releases", summary="Published releases")
    def list_releases(model: str | None = None) -> dict[str, Any]:
        with read_session(engine) as s:
            found = store.list_releases(s, [model] if model else None)
            return {"releases": [r.to_dict() for r in found]}

    @router.put(
        "/models/{model}/desired",
        openapi_extra=JSON_BODY,
        summary="Set the fleet's desired version (moves the registry alias)",
    )
    def set_desired(model: str, body: bytes = Depends(raw_body)) -> dict[str, Any]:
        _, version = version_of(body)
        with write_session(engine) as s:
            if all(r.version != version for r in store.list_releases(s, [model])):
                raise Refused(
                    409,
                    "unpublished",
                    f"{model}@{version} is not published; POST /v1/admin/releases first",
                )
            try:
                set_alias(
                    s,
                    model,
                    settings.alias,
                    version,
                    reason="fleet: desired version",
                    actor="fleet-admin",
                )
            except EdgeloopError as e:
                raise Refused(404, "not_found", str(e)) from e
        return {"model": model, "alias": settings.alias, "version": version}

    @router.get("/trust", summary="What devices pin: the TUF root and the director key")
    def trust() -> dict[str, Any]:
        """For ``edgeloop fleet provision`` (over the admin's authenticated channel)."""
        director = ctx.secrets.director_key
        return {
            "tuf_root": json.loads(ctx.secrets.keyring.root_bytes()),
            "director_key": {
                "keytype": "ed25519",
                "scheme": "ed25519",
                "keyval": {"public": public_hex(director)},
            },
            "director_keyid": key_id(director.public_key()),
        }

    @router.get("/fleet-key", summary="The public key bundles must be encrypted to")
    def fleet_key() -> dict[str, str]:
        key = ctx.secrets.fleet_keys[0]
        return {"fleet_key": public_hex(key), "kid": key_id(key)}

    return router
