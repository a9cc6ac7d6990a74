"""The agent's side of the fleet protocol: signed requests over one ``httpx.AsyncClient``.

Every request is signed with the device key (``edgeloop.protocol.sign_request``); answers are
parsed into the protocol's dataclasses. HTTP failures become :class:`FleetError` (or
:class:`AuthError` for 401/403) naming the endpoint and the server's ``detail``; transport
failures (server down, connection reset) stay ``httpx.TransportError`` for the caller's
back-off. The client is shared: the simulator passes one to thousands of agents.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgeloop.artifacts import DeviceReport
from edgeloop.errors import AuthError, FleetError
from edgeloop.protocol import (
    ENROLL_DEVICE_ID,
    CheckIn,
    CheckInResponse,
    Enrollment,
    EnrollRequest,
    KeyRequest,
    WrappedKey,
    canonical_json,
    sign_request,
)

__all__ = ["FleetClient"]


def _detail(r: httpx.Response) -> str:
    try:
        body = r.json()
    except ValueError:
        return r.text[:200]
    if isinstance(body, dict) and "detail" in body:
        return str(body["detail"])[:300]
    return json.dumps(body)[:200]


class FleetClient:
    def __init__(self, server_url: str, http: httpx.AsyncClient, signing_key: Ed25519PrivateKey):
        self.server_url = server_url.rstrip("/")
        self.http = http
        self.key = signing_key

    async def _post(self, path: str, device_id: str, body: dict[str, Any]) -> dict[str, Any]:
        data = canonical_json(body)
        headers = sign_request(self.key, device_id, "POST", path, data)
        headers["Content-Type"] = "application/json"
        r = await self.http.post(self.server_url + path, content=data, headers=headers)
        if r.status_code in (401, 403):
            raise AuthError(f"POST {path}: server answered {r.status_code}: {_detail(r)}")
        if r.status_code >= 400:
            raise FleetError(f"POST {path}: server answered {r.status_code}: {_detail(r)}")
        try:
            out = r.json()
        except ValueError as e:
            raise FleetError(f"POST {path}: answer is not JSON ({e})") from e
        if not isinstance(out, dict):
            raise FleetError(f"POST {path}: expected a JSON object, got {type(out).__name__}")
        return out

    async def enroll(self, request: EnrollRequest) -> Enrollment:
        data = await self._post("/v1/enroll", ENROLL_DEVICE_ID, request.to_dict())
        return Enrollment.from_dict(data)

    async def checkin(self, device_id: str, checkin: CheckIn) -> CheckInResponse:
        data = await self._post("/v1/checkin", device_id, checkin.to_dict())
        return CheckInResponse.from_dict(data)

    async def federated_node_key(self, device_id: str, binding: dict[str, Any]) -> None:
        await self._post("/v1/federated/node-key", device_id, binding)

    async def federated_poll(self, device_id: str) -> dict[str, Any] | None:
        """The open deployed run this device may join (``{"id", "superlink"}``) or None."""
        run = (await self._post("/v1/federated/poll", device_id, {})).get("run")
        if run is None:
            return None
        if not isinstance(run, dict) or not isinstance(run.get("id"), str) or \
                not isinstance(run.get("superlink"), str):
            raise FleetError(f"POST /v1/federated/poll: expected a run object, got {run!r:.80}")
        return run

    async def telemetry(self, report: DeviceReport) -> None:
        await self._post("/v1/telemetry", report.device_id, report.to_dict())

    async def recipient(self, device_id: str, target: str) -> dict[str, Any]:
        data = await self._post("/v1/keys", device_id, KeyRequest(target=target).to_dict())
        return dict(WrappedKey.from_dict(data).recipient)
