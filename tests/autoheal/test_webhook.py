"""The policy's webhook: one JSON POST per action on 127.0.0.1; failures come back as a line."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

from edgeloop.loop import notify_webhook, parse_policy


def _server(status: int, got: list[dict[str, Any]]) -> HTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            n = int(self.headers.get("content-length", "0"))
            got.append(json.loads(self.rfile.read(n)))
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    srv = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def _policy(url: str | None) -> Any:
    data: dict[str, Any] = {"rules": [{"action": "notify"}]}
    if url:
        data["webhook"] = {"url": url, "timeout_s": 2}
    return parse_policy(data)


def test_webhook_posts_json_and_reports_failures() -> None:
    got: list[dict[str, Any]] = []
    ok, bad = _server(204, got), _server(500, got)
    try:
        url = f"http://127.0.0.1:{ok.server_address[1]}/hook"
        assert notify_webhook(_policy(url), {"action": "started", "job_id": 7}) is None
        assert got == [{"source": "edgeloop-autoheal", "action": "started", "job_id": 7}]
        url = f"http://127.0.0.1:{bad.server_address[1]}/hook"
        assert "HTTP 500" in str(notify_webhook(_policy(url), {"action": "failed"}))
    finally:
        ok.shutdown()
        bad.shutdown()
    closed = HTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    port = closed.server_address[1]
    closed.server_close()
    err = notify_webhook(_policy(f"http://127.0.0.1:{port}/x"), {"action": "notify"})
    assert err is not None and "\n" not in err
    assert notify_webhook(_policy(None), {"action": "notify"}) is None
