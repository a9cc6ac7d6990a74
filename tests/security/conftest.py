"""Attack fixtures: a man-in-the-middle proxy between the agents and the real fleet server.

``mitm(upstream)`` starts a :class:`~security._proxy.MitmProxy` (plain HTTP by default, or TLS
with ``server_context``) that forwards to ``upstream`` and rewrites answers by path prefix;
``proxy.tamper("/v1/enroll", json_tamper(fn))`` swaps what the device sees. Proxies stop at the
end of the test. ``fleet_server`` and ``tls_fleet_server`` (the real ``edgeloop server``, plain or
with the session's test CA) come from tests/e2e/conftest.py.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from e2e.conftest import fleet_server, tls_fleet_server  # noqa: F401 - shared fixtures
from security._proxy import MitmProxy


@pytest.fixture
def mitm() -> Iterator[Callable[..., MitmProxy]]:
    started: list[MitmProxy] = []

    def start(
        upstream: str,
        *,
        upstream_verify: ssl.SSLContext | bool = True,
        server_context: ssl.SSLContext | None = None,
    ) -> MitmProxy:
        proxy = MitmProxy(
            upstream, upstream_verify=upstream_verify, server_context=server_context
        ).__enter__()
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        proxy.__exit__(None, None, None)


def tls_server_context(cert: Any) -> ssl.SSLContext:
    """A server-side context presenting ``cert`` (a tls_certs.TestCA)."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(cert.cert_pem), str(cert.key_pem))
    return ctx
