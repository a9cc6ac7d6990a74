"""A real fleet server (``edgeloop server`` under uvicorn on 127.0.0.1) for attack tests.

Importable from every test (tests/ is on ``sys.path``, see tests/conftest.py). It starts the
server as a user would, talks to it over HTTP as a device or an admin would, and reads the
database directly so a test can assert that a refusal changed nothing.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from edgeloop.bundle import generate_encryption_key, generate_signing_key
from edgeloop.protocol import ENROLL_DEVICE_ID, public_hex, sign_request

PROFILE = {
    "name": "xeon",
    "source": "measured",
    "arch": "x86_64",
    "cpu_model": "Xeon",
    "isa": ["avx2"],
}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveServer:
    """``python -m edgeloop.cli.server`` in a subprocess; ``log`` holds its output."""

    def __init__(self, tmp: Path, *extra: str) -> None:
        self.tmp = tmp
        self.db_path = tmp / "fleet.db"
        self.db = f"sqlite:///{self.db_path}"
        self.data = tmp / "data"
        self.log = tmp / "server.log"
        self.extra = extra
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, ready_s: float = 60.0) -> LiveServer:
        cmd = [
            sys.executable, "-m", "edgeloop.cli.server",
            "--db", self.db, "--data", str(self.data), "--host", "127.0.0.1",
            "--port", str(self.port), "--poll-interval", "5", "--create-release-keys",
            *self.extra,
        ]  # fmt: skip
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + ready_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited {self.proc.returncode}: {self.output}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.1)
        raise AssertionError(f"server not ready in {ready_s:g} s: {self.output}")

    def stop(self) -> None:
        if self.proc is not None:
            from edgeloop.federated.device._process import stop_tree

            stop_tree(self.proc, timeout_s=20)  # SIGTERM, then what it started is killed too
        self.proc = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": "Bearer " + (self.data / "admin-token").read_text().strip()}

    def token(self, **body: Any) -> str:
        r = httpx.post(self.url + "/v1/admin/tokens", json=body, headers=self.admin)
        assert r.status_code == 201, r.text
        return str(r.json()["token"])

    def device(self, **token: Any) -> LiveDevice:
        dev = LiveDevice(self)
        r = dev.enroll(self.token(**token))
        assert r.status_code == 201, r.text
        return dev

    def snapshot(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every row of every table (sorted): equal before and after means nothing changed."""
        engine = sa.create_engine(self.db)
        try:
            with engine.connect() as c:
                tables = sa.inspect(c).get_table_names()
                return {
                    t: sorted(
                        (tuple(map(repr, r)) for r in c.execute(sa.text(f'SELECT * FROM "{t}"'))),
                    )
                    for t in tables
                }
        finally:
            engine.dispose()

    def rows(self, sql: str, **params: Any) -> list[Any]:
        engine = sa.create_engine(self.db)
        try:
            with engine.connect() as c:
                return list(c.execute(sa.text(sql), params))
        finally:
            engine.dispose()


@dataclass
class LiveDevice:
    """A device that signs its requests as the protocol says (what the agent does)."""

    server: LiveServer
    signing: Any = field(default_factory=generate_signing_key)
    encryption: Any = field(default_factory=generate_encryption_key)
    device_id: str = ""

    def enroll(self, token: str, **extra: Any) -> httpx.Response:
        body = json.dumps(
            {
                "token": token,
                "signing_key": public_hex(self.signing),
                "encryption_key": public_hex(self.encryption),
                "profile": PROFILE,
                "agent_version": "0.1.0",
                **extra,
            }
        ).encode()
        headers = sign_request(self.signing, ENROLL_DEVICE_ID, "POST", "/v1/enroll", body)
        r = httpx.post(self.server.url + "/v1/enroll", content=body, headers=headers)
        if r.status_code == 201:
            self.device_id = r.json()["device_id"]
        return r

    def post_raw(self, path: str, body: bytes) -> httpx.Response:
        headers = sign_request(self.signing, self.device_id, "POST", path, body)
        headers["content-type"] = "application/json"
        return httpx.post(self.server.url + path, content=body, headers=headers, timeout=30)

    def post(self, path: str, payload: dict[str, Any]) -> httpx.Response:
        return self.post_raw(path, json.dumps(payload).encode())

    def report(self, version: int | None = 1, model: str | None = "m", **metrics: Any) -> Any:
        return self.post(
            "/v1/telemetry",
            {
                "device_id": self.device_id,
                "model": model,
                "version": version,
                "window_s": 60.0,
                "metrics": metrics,
            },
        )

    def checkin(self, installed: dict[str, Any] | None = None, **extra: Any) -> httpx.Response:
        return self.post(
            "/v1/checkin",
            {"agent_version": "0.1.0", "installed": installed, "health": "ok", **extra},
        )
