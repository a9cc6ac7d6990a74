"""Attack 5 of issue 13: a chunked 600 MiB body was buffered before the size check (server RSS
137 -> 1311 MiB), without credentials. Bodies are now counted while they stream, on every route,
before authentication.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import httpx
import psutil
import pytest

from live_fleet import LiveServer

pytestmark = pytest.mark.slow

LIMIT = 1 << 20  # FleetSettings.report_limit_bytes
ROUTES = ["/v1/telemetry", "/v1/enroll", "/v1/admin/tokens", "/dashboard/login", "/v1/keys"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = LiveServer(tmp_path_factory.mktemp("bodies")).start()
    try:
        yield live
    finally:
        live.stop()


def _stream_chunked(port: int, path: str, total: int, chunk: int = 1 << 16) -> tuple[int, bytes]:
    """POST ``total`` bytes chunked (no Content-Length), without credentials; returns how many
    bytes the server took before it answered or hung up, and its answer."""
    sent = 0
    reply = b""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\n\r\n".encode()
        )
        piece = f"{chunk:x}\r\n".encode() + b"[" * chunk + b"\r\n"
        sock.settimeout(0.0)
        try:
            while sent < total:
                try:
                    sock.sendall(piece)
                except BlockingIOError:
                    time.sleep(0.01)  # the server is not reading: see if it answered
                sent += chunk
                try:
                    data = sock.recv(65536)
                except BlockingIOError:
                    continue
                reply += data
                break
        except (BrokenPipeError, ConnectionResetError):
            pass
        sock.settimeout(10)
        try:
            while not reply.endswith(b"}") and (data := sock.recv(65536)):
                reply += data
        except (ConnectionResetError, TimeoutError):
            pass
    return sent, reply


def test_a_chunked_600_mib_body_is_cut_off_and_does_not_grow_the_server(server):
    proc = psutil.Process(server.pid)
    httpx.get(server.url + "/healthz")  # warm: the first requests allocate what they keep
    rss_before = proc.memory_info().rss

    sent, reply = _stream_chunked(server.port, "/v1/telemetry", 600 << 20)

    rss_after = proc.memory_info().rss
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    assert b"at most 1048576" in reply
    assert sent < 64 << 20  # the server stopped taking the body long before 600 MiB
    assert rss_after - rss_before < 32 << 20, (rss_before >> 20, rss_after >> 20)
    assert httpx.get(server.url + "/healthz").status_code == 200


@pytest.mark.parametrize("path", ROUTES)
def test_every_route_refuses_an_oversized_body_before_authentication(server, path):
    before = server.snapshot()

    sent, reply = _stream_chunked(server.port, path, 4 << 20)

    assert reply.startswith(b"HTTP/1.1 413"), (path, reply[:200])
    assert server.snapshot() == before


def test_a_declared_length_over_the_limit_is_refused_unread(server):
    r = httpx.post(
        server.url + "/v1/admin/tokens", content=b"x" * (LIMIT + 1), headers={"x": "no auth"}
    )
    assert r.status_code == 413 and "at most 1048576" in r.json()["detail"]


def test_a_body_at_the_limit_still_reaches_the_route(server):
    body = b"{" + b" " * (LIMIT - 2) + b"}"
    r = httpx.post(server.url + "/v1/admin/tokens", content=body)
    assert r.status_code == 401  # read whole, then refused for want of a token


def test_no_refusal_left_a_traceback(server):
    assert "Traceback" not in server.output
