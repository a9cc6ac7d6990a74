"""Live servers on 127.0.0.1 whose ports another pytest-xdist worker cannot take.

Picking a free port (bind to port 0, close, hand the number on) and binding it later leaves a
window in which another worker's server takes the port. Every live-server fixture uses one of
these instead:

- a server in this process: :func:`listening_socket` binds (and listens) first and the socket
  itself goes to uvicorn (``uvicorn.Server(config).run(sockets=[sock])``); :func:`serve_app`
  does that in a thread;
- a server in a child process that binds its own port (``edgeloop server``, ``pg_ctl``):
  :func:`on_free_port` tries again on another port when the child says EADDRINUSE, and
  :class:`ChildServer` counts the server up only once it answers as *this* server (``ready``),
  never another worker's that holds the port while our child is still failing to bind;
- a port nobody listens on: :func:`refused_port` keeps it bound and not listening, so
  connections are refused and no other server can take it while the test runs.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import httpx

__all__ = [
    "HOST",
    "ChildServer",
    "PortTaken",
    "fleet_ready",
    "free_port",
    "listening_socket",
    "on_free_port",
    "port_taken",
    "refused_port",
    "serve_app",
]

HOST = "127.0.0.1"
T = TypeVar("T")


class PortTaken(RuntimeError):
    """The server could not bind its port: something else holds it (EADDRINUSE)."""


def port_taken(text: str) -> bool:
    """Whether a server's log says its port was in use (uvicorn, PostgreSQL, Python)."""
    low = text.lower()
    return "address already in use" in low or "errno 98" in low


def free_port() -> int:
    """A port free at this instant: only a first guess for a child that binds it itself
    (see :func:`on_free_port`); a server in this process takes :func:`listening_socket`."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def listening_socket() -> socket.socket:
    """A TCP socket bound to a free loopback port and listening: give it to the server."""
    sock = socket.socket()
    sock.bind((HOST, 0))
    sock.listen(128)
    return sock


@contextlib.contextmanager
def refused_port() -> Iterator[int]:
    """A port that refuses connections for as long as the block runs (bound, not listening)."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        yield int(s.getsockname()[1])


def on_free_port(start: Callable[[int], T], attempts: int = 8) -> T:
    """``start(port)`` on a free port; again on another while it raises :class:`PortTaken`."""
    for _ in range(attempts - 1):
        with contextlib.suppress(PortTaken):
            return start(free_port())
    return start(free_port())


@contextlib.contextmanager
def serve_app(app: Any, timeout_s: float = 30.0) -> Iterator[str]:
    """Serve an ASGI app with uvicorn in a thread on a socket bound first; yields its URL."""
    import uvicorn

    sock = listening_socket()
    port = int(sock.getsockname()[1])
    server = uvicorn.Server(uvicorn.Config(app, host=HOST, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    url = f"http://{HOST}:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"uvicorn did not start on {url} within {timeout_s:.0f} s")
            time.sleep(0.05)
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


def fleet_ready(token_file: Path, verify: Any = True) -> Callable[[str], bool]:
    """Readiness of *our* fleet server: the admin API accepts the admin token its data dir
    holds (another worker's server has another token and answers 401). ``verify``: what
    httpx checks the server's certificate with (a CA-pinning SSL context under TLS)."""

    def ready(url: str) -> bool:
        try:
            token = token_file.read_text().strip()
        except OSError:
            return False
        headers = {"Authorization": f"Bearer {token}"}
        r = httpx.get(
            url + "/v1/admin/devices?limit=1", headers=headers, timeout=2, verify=verify
        )
        return r.status_code == 200

    return ready


class ChildServer:
    """A server in a child process that binds the port it is given on 127.0.0.1.

    ``argv(port)`` is its command line, ``ready(url)`` says whether it answers as itself. The
    first :meth:`start` finds a port (another one if the child reports EADDRINUSE); a restart
    after :meth:`stop` keeps that port, so clients holding the URL reach the new process.
    """

    def __init__(
        self,
        argv: Callable[[int], Sequence[str]],
        log: Path,
        ready: Callable[[str], bool],
        *,
        env: Mapping[str, str] | None = None,
        timeout_s: float = 60.0,
        scheme: str = "http",
    ) -> None:
        self.argv, self.log, self.ready, self.scheme = argv, log, ready, scheme
        self.env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
        self.timeout_s = timeout_s
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"{self.scheme}://{HOST}:{self.port}"

    def start(self) -> None:
        if self.port:
            try:
                self._start_on(self.port)
            except PortTaken as e:
                raise RuntimeError(f"port {self.port} was taken while the server was down") from e
            return
        on_free_port(self._start_on)

    def _start_on(self, port: int) -> None:
        self.port = port
        offset = self.log.stat().st_size if self.log.exists() else 0
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                list(self.argv(port)), stdout=log, stderr=subprocess.STDOUT, env=self.env
            )
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                with open(self.log, "rb") as f:
                    f.seek(offset)
                    text = f.read().decode("utf-8", "replace")
                self.proc = None
                if port_taken(text):
                    raise PortTaken(f"port {port}: {text[-500:]}")
                raise RuntimeError(f"the server exited on port {port}: {text[-3000:]}")
            with contextlib.suppress(httpx.TransportError):
                if self.ready(self.url):
                    return
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"the server did not answer on {self.url} within {self.timeout_s} s")

    def stop(self) -> None:
        if self.proc is not None:
            from edgeloop.federated.device._process import stop_tree

            # SIGTERM, then whatever it started (auto-heal workers, their SuperLinks and
            # flwr-serverapp processes in sessions of their own) is killed too
            stop_tree(self.proc, timeout_s=20)
        self.proc = None
