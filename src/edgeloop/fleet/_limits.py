"""Request bodies limited while they stream in, on every route, before authentication.

:class:`BodyLimit` is a pure ASGI middleware (the outermost of the app's own): a declared
``Content-Length`` over the limit is answered 413 before a byte of the body is read, and a body
without one (``Transfer-Encoding: chunked``) is counted as its chunks arrive and refused the
moment the count passes the limit. Routes that buffer the body (``raw_body``) therefore never
hold more than the limit, whoever sent it. Without this, a chunked 600 MiB body was buffered
whole before the size check (server RSS 137 -> 1311 MiB), without credentials.

Written as ASGI rather than as an ``@app.middleware("http")`` function because the latter
cannot see the body chunk by chunk without buffering it.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from edgeloop.fleet._store import Refused

__all__ = ["BodyLimit"]


def _too_large(seen: int | str, limit: int) -> Refused:
    return Refused(413, "too_large", f"body of {seen} bytes or more; at most {limit}")


class BodyLimit:
    """Refuse (413) any HTTP request whose body is, or grows, larger than ``limit`` bytes."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                declared = value.decode("latin-1").strip()
                if not declared.isdigit() or int(declared) > self.limit:
                    await _answer(send, _too_large(declared, self.limit))
                    return
        seen = 0
        started = False

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _too_large(seen, self.limit)
            return message

        async def tracked(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except Refused as e:  # raised by ``counted`` past every handler (e.g. a form parser)
            if started or e.status != 413:
                raise
            await _answer(send, e)


async def _answer(send: Send, refused: Refused) -> None:
    body = json.dumps({"detail": str(refused)}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": refused.status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
