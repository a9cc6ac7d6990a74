"""Request bodies limited while they stream in, on every route, before authentication.

:class:`BodyLimit` is a pure ASGI middleware (the outermost of the app's own): a declared
``Content-Length`` over the limit is answered 413 before a byte of the body is read, and a body
without one (``Transfer-Encoding: chunked``) is counted as its chunks arrive and refused the
moment the count passes the limit, before any route, dependency or authentication runs. A body
within the limit is handed on whole (every route reads its body whole anyway: signatures cover
its exact bytes), so no process holds more than the limit per request, whoever sent it. Without
this, a chunked 600 MiB body was buffered whole before the size check (server RSS 137 -> 1311
MiB), without credentials.

Written as ASGI rather than as an ``@app.middleware("http")`` function because the latter cannot
see the body chunk by chunk without buffering it; and it answers the 413 itself rather than
raising from ``receive``, which Starlette's ``BaseHTTPMiddleware`` would turn into a 500.
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
        # read the body here, counting as it arrives: past the limit, answer at once and never
        # call the app; else hand the app the body it would have read (at most the limit)
        chunks: list[bytes] = []
        seen = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away: nothing to serve
                return
            chunk = message.get("body", b"")
            seen += len(chunk)
            if seen > self.limit:
                await _answer(send, _too_large(seen, self.limit))
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: wait for the disconnect, as servers do

        await self.app(scope, replay, send)


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
