"""The alert webhook: bounded retries on 5xx and transport errors, none on 2xx/4xx."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from edgeloop.fleet._monitor_api import parse_since, post_with_retries


class _Flaky(BaseHTTPRequestHandler):
    codes: list[int] = []
    bodies: list[bytes] = []

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        return

    def do_POST(self) -> None:  # noqa: N802
        self.bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
        self.send_response(self.codes.pop(0) if self.codes else 204)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def receiver():
    _Flaky.codes, _Flaky.bodies = [], []
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/hook"
    srv.shutdown()
    srv.server_close()


def test_a_5xx_is_retried_until_it_is_taken(receiver):
    _Flaky.codes = [503, 500]
    assert post_with_retries(receiver, b"{}", backoff_s=0.01) == (204, 3)
    assert _Flaky.bodies == [b"{}"] * 3


def test_a_4xx_is_not_retried(receiver):
    _Flaky.codes = [400]
    assert post_with_retries(receiver, b"{}", backoff_s=0.01) == (400, 1)


def test_retries_are_bounded_when_the_receiver_stays_down():
    t0 = time.monotonic()
    status, attempts = post_with_retries("http://127.0.0.1:9/hook", b"{}", attempts=3,
                                         timeout_s=0.5, backoff_s=0.01)
    assert (status, attempts) == (None, 3) and time.monotonic() - t0 < 5


def test_since_takes_a_duration_or_an_iso_time():
    from datetime import datetime, timedelta, timezone

    from edgeloop.fleet._store import Refused

    now = datetime(2026, 1, 2, tzinfo=timezone.utc)
    assert parse_since("6h", now, timedelta(days=1)) == now - timedelta(hours=6)
    assert parse_since(None, now, timedelta(days=1)) == now - timedelta(days=1)
    assert parse_since("2026-01-01T00:00:00", now, timedelta(0)).tzinfo is not None
    with pytest.raises(Refused, match="expected an ISO time"):
        parse_since("yesterday", now, timedelta(0))
