"""``edgeloop fleet ...`` and ``edgeloop rollout ...`` talk to a server through the httpx admin
client alone: the admin paths import neither the server framework nor the database layer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

SERVER_ONLY = {"fastapi", "starlette", "sqlalchemy", "alembic", "uvicorn", "torch"}
TOKEN = "t" * 43

ANSWERS: dict[str, Any] = {
    "/v1/admin/devices": {"devices": []},
    "/v1/admin/releases": {"releases": []},
    "/v1/admin/rollouts?limit=100": {"rollouts": []},
    "/v1/admin/monitor/status?model=kws&version=3": {"alerts": [], "events": []},
    "/v1/admin/monitor/status?model=kws": {
        "alerts": [],
        "events": [],
        "degradation": [
            {
                "model": "kws",
                "version": 2,
                "cohort": "region=north",
                "selftest_failures": 1.0,
                "degrading": ["error_rate", "selftest"],
                "buckets": [
                    {"error_rate": 0.001, "p99_ms": 10.0},
                    {"error_rate": 0.05, "p99_ms": 11.0},
                ],
            },
        ],
    },
}
JOB = {
    "id": 7, "kind": "finetune", "state": "queued", "model": "kws", "version": 3,
    "cohort": "region=north", "event_id": 4, "reason": "monitoring alert on kws@3: cohort "
    "region=north (x0)", "detail": {}, "created_by": "monitor",
    "created_at": "2026-01-01T00:00:00+00:00", "updated_at": "2026-01-01T00:00:00+00:00",
    "worker": None, "claimed_at": None, "attempts": 0, "result": {},
}
ANSWERS["/v1/admin/monitor/jobs?state=queued&limit=50"] = {"jobs": [JOB]}
ANSWERS["/v1/admin/monitor/jobs?limit=50"] = {"jobs": []}
REGRESSION = (
    "kws@2 regresses against kws@1 (production) on its evaluation suite: accuracy on "
    "region=north 0.5000 vs 1.0000, a drop of 0.5000 beyond the budget 0.0100"
)


class _Admin(BaseHTTPRequestHandler):
    """A stand-in admin API on loopback: checks the bearer token, answers fixed JSON."""

    def do_GET(self) -> None:
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            self._answer(401, {"detail": "admin API needs 'Authorization: Bearer <admin token>'"})
        elif self.path in ANSWERS:
            self._answer(200, ANSWERS[self.path])
        else:
            self._answer(404, {"detail": f"no route {self.path}"})

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path == "/v1/admin/rollouts":
            self._answer(409, {"detail": REGRESSION})
        else:
            self._answer(404, {"detail": f"no route {self.path}"})

    def _answer(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *_args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def admin_url() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Admin)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def _run(args: list[str], token: str = TOKEN) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    env = dict(os.environ, EDGELOOP_ADMIN_TOKEN=token)
    r = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "edgeloop", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    names = {
        line.rsplit("|", 1)[1].strip().split(".")[0]
        for line in r.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }
    assert "httpx" in names  # the listing was parsed and the client was used
    return r, names


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["fleet", "devices", "--json"], []),
        (["fleet", "releases", "--json"], []),
        (["rollout", "list", "--json"], []),
        (["monitor", "status", "kws@3", "--json"], {"alerts": [], "events": []}),
        (["monitor", "jobs", "--json"], []),
    ],
)
def test_admin_commands_import_no_server_code(
    admin_url: str, args: list[str], expected: object
) -> None:
    group, rest = args[0], args[1:]

    r, names = _run([group, "--server", admin_url, *rest])

    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads(r.stdout) == expected
    assert names & SERVER_ONLY == set()


def test_a_refused_admin_request_is_one_auth_error_line(admin_url: str) -> None:
    r, names = _run(["fleet", "--server", admin_url, "devices"], token="wrong")

    errors = [line for line in r.stderr.splitlines() if not line.startswith("import time:")]
    assert r.returncode != 0
    assert any("GET /v1/admin/devices -> 401" in line for line in errors), errors
    assert names & SERVER_ONLY == set()


def test_monitor_status_shows_the_degradation_trends(admin_url: str) -> None:
    r, _names = _run(["monitor", "--server", admin_url, "status", "kws"])

    text = " ".join(r.stdout.split())
    assert r.returncode == 0, r.stderr[-2000:]
    assert "0.0010 -> 0.0500" in text and "10.0 -> 11.0" in text
    assert "error_rate, selftest" in text


def test_monitor_jobs_lists_the_queued_finetune_jobs(admin_url: str) -> None:
    r, names = _run(["monitor", "--server", admin_url, "jobs", "--state", "queued"])

    text = " ".join(r.stdout.split())
    assert r.returncode == 0, r.stderr[-2000:]
    assert "finetune" in text and "kws@3" in text and "region=north" in text
    assert names & SERVER_ONLY == set()


def test_monitor_jobs_refuses_an_unknown_state_in_one_line_before_any_request(
    admin_url: str,
) -> None:
    env = dict(os.environ, EDGELOOP_ADMIN_TOKEN=TOKEN)
    r = subprocess.run(
        [sys.executable, "-m", "edgeloop", "monitor", "--server", admin_url, "jobs", "--state",
         "done"], capture_output=True, text=True, timeout=120, env=env,
    )

    errors = [line for line in r.stderr.splitlines() if line.strip()]
    assert r.returncode != 0 and r.stdout == ""
    assert len(errors) == 1 and "--state 'done': expected one of queued" in errors[0], errors


def test_rollout_start_of_a_regressing_version_exits_80_with_the_figure(admin_url: str) -> None:
    r, _names = _run(["rollout", "--server", admin_url, "start", "kws@2"])

    errors = [line for line in r.stderr.splitlines() if not line.startswith("import time:")]
    assert r.returncode == 80
    assert any("409" in line and REGRESSION in line for line in errors), errors
