"""The local inference endpoint: a small HTTP server on 127.0.0.1 (standard library only).

``POST /v1/predict`` with ``{"inputs": {"name": [[...]]}}`` answers
``{"model": ..., "version": ..., "outputs": {"name": [[...]]}, "prediction_id": "..."}``;
``POST /v1/feedback`` with ``{"prediction_id": "...", "label": 2}`` (a delayed label, class
index) answers ``{"matched": true}`` (false: unknown, evicted or already labelled id);
``GET /v1/status`` answers the agent's status (active model and version, slot, trial,
counters). Errors come back as ``{"error": message}`` with 400 (bad input), 503 (no model
installed, or no monitoring reference for feedback) or 500.

It listens on loopback only: local applications talk to it, the network does not.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np

from edgeloop.errors import AgentError, EdgeloopError, InputError, ModelInputError, MonitorError

__all__ = ["LocalServer"]

MAX_BODY = 64 << 20

MAX_FEEDBACK_BODY = 4096
Predict = Callable[[Mapping[str, Any]], tuple[str, int, dict[str, np.ndarray], str]]
Status = Callable[[], dict[str, Any]]
Feedback = Callable[[str, int], bool]


def _status_for(e: Exception) -> int:
    if isinstance(e, InputError | ModelInputError):
        return 400
    if isinstance(e, AgentError | MonitorError):
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

    def _json(self, limit: int) -> Any:
        length = int(self.headers.get("Content-Length", "0"))
        if not 0 < length <= limit:
            raise InputError(f"request body of {length} bytes, expected 1..{limit}")
        try:
            return json.loads(self.rfile.read(length))
        except ValueError as e:
            raise InputError(f"request body is not JSON ({e})") from e

    def do_POST(self) -> None:  # noqa: N802 - stdlib naming
        path = self.path.rstrip("/")
        if path == "/v1/feedback" and self.server.feedback is not None:
            self._feedback()
            return
        if path != "/v1/predict":
            self._send(404, {"error": f"no route {self.path!r}; try POST /v1/predict"})
            return
        try:
            body = self._json(MAX_BODY)
            if not isinstance(body, dict) or not isinstance(body.get("inputs"), dict):
                raise InputError('expected a JSON object {"inputs": {name: array}}')
            model, version, outputs, pid = self.server.predict(body["inputs"])
        except (EdgeloopError, ValueError, TypeError) as e:
            self._send(_status_for(e), {"error": str(e)})
            return
        self._send(
            200,
            {
                "model": model,
                "version": version,
                "outputs": {k: np.asarray(v).tolist() for k, v in outputs.items()},
                "prediction_id": pid,
            },
        )

    def _feedback(self) -> None:
        assert self.server.feedback is not None
        try:
            body = self._json(MAX_FEEDBACK_BODY)
            pid = body.get("prediction_id") if isinstance(body, dict) else None
            label = body.get("label") if isinstance(body, dict) else None
            if not isinstance(pid, str) or isinstance(label, bool) or not isinstance(label, int):
                raise InputError('expected a JSON object {"prediction_id": str, "label": int}')
            matched = self.server.feedback(pid, label)
        except MonitorError as e:
            # a malformed id or a label outside the classes is the caller's error
            code = 503 if "no monitoring reference" in str(e) else 400
            self._send(code, {"error": str(e)})
            return
        except (EdgeloopError, ValueError, TypeError) as e:
            self._send(_status_for(e), {"error": str(e)})
            return
        self._send(200, {"matched": matched})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    predict: Predict
    status: Status
    feedback: Feedback | None


class LocalServer:
    """Serve ``predict`` (and ``feedback``, when given) on ``127.0.0.1:port`` (0 picks a free
    port) in a background thread."""

    def __init__(
        self, predict: Predict, status: Status, port: int = 0, feedback: Feedback | None = None
    ) -> None:
        self._server = _Server(("127.0.0.1", port), _Handler)
        self._server.predict = predict
        self._server.status = status
        self._server.feedback = feedback
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
