"""tests/_live.py: live servers whose ports another pytest-xdist worker cannot take."""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import _live
from _live import ChildServer, refused_port, serve_app

# A child server that binds the port it is given and answers "ours" (http.server, stdlib).
OURS = """
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

class Ours(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ours")

HTTPServer(("127.0.0.1", int(sys.argv[1])), Ours).serve_forever()
"""


async def _other(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Another worker's server: answers 200 "other" to everything."""
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"other"})


def _is_ours(url: str) -> bool:
    return httpx.get(url, timeout=2).text == "ours"


@pytest.fixture
def other_server() -> Iterator[int]:
    with serve_app(_other) as url:
        yield int(url.rsplit(":", 1)[1])


def test_a_child_whose_port_was_taken_starts_on_another_and_is_not_fooled(
    other_server: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    guesses = iter([other_server])  # the first "free" port is the other server's by now
    real = _live.free_port
    monkeypatch.setattr(_live, "free_port", lambda: next(guesses, None) or real())
    server = ChildServer(
        lambda port: [sys.executable, "-c", OURS, str(port)], tmp_path / "log", _is_ours
    )

    server.start()
    try:
        got = httpx.get(server.url).text
    finally:
        server.stop()

    assert server.port != other_server
    assert got == "ours"
    assert "address already in use" in (tmp_path / "log").read_text().lower()


def test_a_restart_keeps_the_port(tmp_path: Path) -> None:
    server = ChildServer(
        lambda port: [sys.executable, "-c", OURS, str(port)], tmp_path / "log", _is_ours
    )
    server.start()
    port = server.port
    server.stop()

    server.start()
    try:
        assert server.port == port and _is_ours(server.url)
    finally:
        server.stop()


def test_serve_app_serves_on_the_socket_it_bound_first() -> None:
    with serve_app(_other) as url:
        assert httpx.get(url + "/anything").text == "other"


def test_a_refused_port_refuses_and_cannot_be_taken() -> None:
    with refused_port() as port:
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{port}/", timeout=2)
        with socket.socket() as s, pytest.raises(OSError, match="in use"):
            s.bind(("127.0.0.1", port))
