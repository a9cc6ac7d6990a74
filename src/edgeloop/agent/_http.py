"""The local inference endpoint: a small HTTP server on 127.0.0.1 (standard library only).

``POST /v1/predict`` with ``{"inputs": {"name": [[...]]}}`` answers
``{"model": ..., "version": ..., "outputs": {"name": [[...]]}}``; ``GET /v1/status`` answers the
agent's status (active model and version, slot, trial, counters). Errors come back as
``{"error": message}`` with 400 (bad input), 503 (no model installed) or 500.

It listens on loopback only: local applications talk to it, the network does not.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np

from edgeloop.errors import AgentError, EdgeloopError, InputError, ModelInputError

__all__ = ["LocalServer"]

MAX_BODY = 64 << 20

Predict = Callable[[Mapping[str, Any]], tuple[str, int, dict[str, np.ndarray]]]
Status = Callable[[], dict[str, Any]]


def _status_for(e: Exception) -> int:
    if isinstance(e, InputError | ModelInputError):
        return 400
    if isinstance(e, AgentError):
        return 503
    return 500


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    # one write per response and no Nagle: otherwise headers and body go out in separate
    # segments and a keep-alive client waits ~40 ms for the delayed ACK on every request
    wbufsize = 1 << 16
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        return  # quiet: the agent's telemetry counts requests

    def _send(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        if self.path.rstrip("/") in ("/v1/status", "/v1/health"):
            self._send(200, self.server.status())
        else:
            self._send(404, {"error": f"no route {self.path!r}; try POST /v1/predict"})

    def do_POST(self) -> None:  # noqa: N802 - stdlib naming
        if self.path.rstrip("/") != "/v1/predict":
            self._send(404, {"error": f"no route {self.path!r}; try POST /v1/predict"})
            return
        try:
            length = int(self.headers.get("Content-Length", "0"))
            if not 0 < length <= MAX_BODY:
                raise InputError(f"request body of {length} bytes, expected 1..{MAX_BODY}")
            try:
                body = json.loads(self.rfile.read(length))
            except ValueError as e:
                raise InputError(f"request body is not JSON ({e})") from e
            if not isinstance(body, dict) or not isinstance(body.get("inputs"), dict):
                raise InputError('expected a JSON object {"inputs": {name: array}}')
            model, version, outputs = self.server.predict(body["inputs"])
        except (EdgeloopError, ValueError, TypeError) as e:
            self._send(_status_for(e), {"error": str(e)})
            return
        self._send(
            200,
            {
                "model": model,
                "version": version,
                "outputs": {k: np.asarray(v).tolist() for k, v in outputs.items()},
            },
        )


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    predict: Predict
    status: Status


class LocalServer:
    """Serve ``predict`` on ``127.0.0.1:port`` (0 picks a free port) in a background thread."""

    def __init__(self, predict: Predict, status: Status, port: int = 0) -> None:
        self._server = _Server(("127.0.0.1", port), _Handler)
        self._server.predict = predict
        self._server.status = status
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="edgeloop-agent-http", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LocalServer:
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
