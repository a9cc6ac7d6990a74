"""The check-in and telemetry served as plain ASGI (``_device_api.DeviceRoutes``) answer what
FastAPI's routes for them answer: the same statuses, bodies and metrics, for good requests and
for every kind of refusal; anything else goes on to FastAPI."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from edgeloop.fleet import FleetSettings, create_app
from edgeloop.fleet import _device_api as device_api
from edgeloop.protocol import InstalledModel, sign_request

from .conftest import Fleet


def _script(fleet: Fleet) -> list[tuple[str, int, Any]]:
    """Good and hostile check-ins and reports; each answer as (what, status, body)."""
    fleet.release("kws", 1, {"fp32": {}})
    dev = fleet.device(model="kws")
    other = fleet.device(model="kws")
    out: list[tuple[str, int, Any]] = []

    def keep(what: str, r: Any) -> Any:
        body = r.json() if r.headers.get("content-type") == "application/json" else r.text
        out.append((what, r.status_code, body))
        assert "content-length" in r.headers, what
        return body

    first = keep("first check-in", dev.checkin())
    installed = InstalledModel("kws", 1, "fp32").to_dict()
    sha = first.get("assignment_sha256")
    keep("check-in holding it", dev.checkin(installed, assignment_sha256=sha))
    body, headers = dev.signed("/v1/checkin", {"agent_version": "0.1.0", "health": "ok"})
    keep("signed", fleet.client.post("/v1/checkin", content=body, headers=headers))
    keep("replay", fleet.client.post("/v1/checkin", content=body, headers=headers))
    tampered = body.replace(b'"ok"', b'"failing"')
    keep("tampered", fleet.client.post("/v1/checkin", content=tampered, headers=headers))
    stale = dev.post("/v1/checkin", {"agent_version": "0.1.0"}, timestamp=int(time.time()) - 3600)
    keep("stale", stale)
    unsigned = {k: v for k, v in headers.items() if k != "Edgeloop-Signature"}
    keep("unsigned", fleet.client.post("/v1/checkin", content=body, headers=unsigned))
    not_json = sign_request(dev.signing, dev.device_id, "POST", "/v1/checkin", b"{")
    keep("not JSON", fleet.client.post("/v1/checkin", content=b"{", headers=not_json))
    keep("bad field", dev.post("/v1/checkin", {"agent_version": 7}))
    keep("bad health", dev.post("/v1/checkin", {"agent_version": "0.1.0", "health": 1e999}))
    huge = b"x" * (fleet.settings.report_limit_bytes + 1)
    keep("too large", fleet.client.post("/v1/checkin", content=huge, headers=dict(headers)))
    report = {"device_id": dev.device_id, "model": "kws", "version": 1, "window_s": 60.0,
              "metrics": {"requests": 120.0, "errors": 1.0}, "agent_version": "0.1.0"}  # fmt: skip
    keep("telemetry", dev.post("/v1/telemetry", report))
    keep("telemetry of another", other.post("/v1/telemetry", report))
    keep("telemetry not a report", dev.post("/v1/telemetry", {"device_id": dev.device_id}))
    keep("GET", fleet.client.get("/v1/checkin"))
    keep("trailing slash", fleet.client.post("/v1/checkin/", content=body, headers=headers,
                                             follow_redirects=False))  # fmt: skip
    counted = ("requests_total", "auth_failures_total", "request_seconds_count", "assignments")
    metrics = [
        line
        for line in fleet.client.get("/metrics").text.splitlines()
        if line.startswith(tuple(f"edgeloop_fleet_{name}" for name in counted))
    ]
    out.append(("metrics", 0, sorted(metrics)))
    return out


def _normal(answers: list[tuple[str, int, Any]]) -> list[Any]:
    """What differs between two fleets by design: times, ids, nonces, signatures, hashes."""
    blanked = ("server_time", "device_id", "assignment", "assignment_sha256")

    def walk(x: Any) -> Any:
        if isinstance(x, dict):
            return {k: (v is not None) if k in blanked else walk(v) for k, v in x.items()}
        if isinstance(x, list | tuple):
            return [walk(v) for v in x]
        if isinstance(x, str):  # ids and nonces; timestamps and clock offsets
            return re.sub(r"-?[0-9]{4,}", "<n>", re.sub(r"[0-9a-f]{32}", "<hex>", x))
        return x

    return [walk(a) for a in answers]


def _fleet(tmp: Path) -> tuple[FleetSettings, TestClient]:
    settings = FleetSettings(
        db_url=f"sqlite:///{tmp / 'fleet.db'}",
        data_dir=tmp / "data",
        poll_interval_s=30.0,
        create_release_keys=True,
    )
    return settings, TestClient(create_app(settings))


def test_plain_routes_answer_what_the_fastapi_routes_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    answers = {}
    served = []
    for plain in (True, False):
        with monkeypatch.context() as m:
            if not plain:  # every request goes on to FastAPI's routes
                m.setattr(device_api, "_PLAIN", {})
            else:

                def counted(*a: Any) -> Any:
                    served.append(1)
                    return device_api._checkin(*a)

                routes = dict(device_api._PLAIN)
                _, status, route = routes["/v1/checkin"]
                m.setitem(device_api._PLAIN, "/v1/checkin", (counted, status, route))
            settings, client = _fleet(tmp_path / str(plain))
            with client:
                answers[plain] = _script(Fleet(settings, client, tmp_path / str(plain)))
    assert served, "the plain path served no check-in"
    assert _normal(answers[True]) == _normal(answers[False])
    statuses = {what: status for what, status, _ in answers[True]}
    assert statuses == {
        "first check-in": 200, "check-in holding it": 200, "signed": 200, "replay": 401,
        "tampered": 401, "stale": 401, "unsigned": 401, "not JSON": 400, "bad field": 400,
        "bad health": 400, "too large": 413, "telemetry": 202, "telemetry of another": 403,
        "telemetry not a report": 400, "GET": 405, "trailing slash": 307, "metrics": 0,
    }  # fmt: skip
