"""A man-in-the-middle proxy for attack tests: forwards to the real server, tampers on request.

The proxy listens on 127.0.0.1 (plain HTTP, or TLS with a certificate of its own, which a
device that pins the fleet's CA must refuse) and forwards every request to ``upstream`` with
httpx. Tests install tampering rules: ``proxy.tamper(path_prefix, fn)`` where ``fn(body)``
returns the bytes to send to the device instead of the server's answer (JSON helpers below).
Every request seen is recorded in ``proxy.seen`` as ``(method, path, status)``.
"""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

Tamper = Callable[[bytes], bytes]

_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding"}


def json_tamper(fn: Callable[[dict[str, Any]], dict[str, Any]]) -> Tamper:
    """A tamper rule on a JSON body: ``fn`` gets the parsed object and returns the new one."""

    def apply(body: bytes) -> bytes:
        return json.dumps(fn(json.loads(body))).encode()

    return apply


def flip_bit(offset_from_end: int = 40) -> Tamper:
    """Flip one bit of the body (a byte near the end, where a wrapped key's ciphertext sits)."""

    def apply(body: bytes) -> bytes:
        b = bytearray(body)
        b[len(b) - offset_from_end] ^= 0x01
        return bytes(b)

    return apply


class MitmProxy:
    """``with MitmProxy(upstream) as proxy: agent talks to proxy.url``."""

    def __init__(
        self,
        upstream: str,
        *,
        upstream_verify: ssl.SSLContext | bool = True,
        server_context: ssl.SSLContext | None = None,
    ) -> None:
        self.upstream = upstream.rstrip("/")
        self.rules: list[tuple[str, Tamper, int]] = []  # (path prefix, fn, remaining uses)
        self.seen: list[tuple[str, str, int]] = []
        self._lock = threading.Lock()
        self._client = httpx.Client(verify=upstream_verify, timeout=60.0)
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        scheme = "http"
        if server_context is not None:
            self._httpd.socket = server_context.wrap_socket(self._httpd.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def tamper(self, path_prefix: str, fn: Tamper, times: int = -1) -> None:
        """Rewrite answers to paths starting with ``path_prefix`` (``times`` uses; -1: always)."""
        with self._lock:
            self.rules.append((path_prefix, fn, times))

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()

    def _rewrite(self, path: str, body: bytes) -> bytes:
        with self._lock:
            for i, (prefix, fn, left) in enumerate(self.rules):
                if path.startswith(prefix) and left != 0:
                    self.rules[i] = (prefix, fn, left - 1 if left > 0 else left)
                    return fn(body)
        return body

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet test output
                pass

            def _forward(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
                headers.pop("Host", None)
                try:
                    r = proxy._client.request(
                        self.command, proxy.upstream + self.path, content=body, headers=headers
                    )
                except httpx.HTTPError as e:
                    self.send_error(502, f"upstream: {e}")
                    return
                out = r.content
                if r.status_code < 400:
                    out = proxy._rewrite(self.path, out)
                with proxy._lock:
                    proxy.seen.append((self.command, self.path, r.status_code))
                self.send_response(r.status_code)
                for k, v in r.headers.items():
                    if k.lower() not in _HOP:
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _forward

        return Handler

    def __enter__(self) -> MitmProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._client.close()
