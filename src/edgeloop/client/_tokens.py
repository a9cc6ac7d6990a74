"""Enrollment tokens for many devices at once (the simulator's and benchmarks' fleets)."""

from __future__ import annotations

import asyncio
import ssl

import httpx

from edgeloop.client._errors import raise_for_status, unreachable

__all__ = ["create_tokens"]

_TOKENS = "/v1/admin/tokens"


async def create_tokens(
    server_url: str,
    admin_token: str,
    n: int,
    *,
    model: str | None = None,
    per_token: int | None = None,
    concurrency: int = 32,
    verify: ssl.SSLContext | bool = True,
) -> list[str]:
    """Enrollment tokens for ``n`` devices from the admin API, one entry per device.

    ``per_token`` devices share each token (the server's ``uses``); by default one token
    serves them all, which keeps a 10,000-device run from spending minutes on token writes.
    ``per_token=1`` gives every device its own one-time token. Asynchronous (``concurrency``
    requests at a time) because thousands of one-time tokens one by one take minutes.
    """
    base = server_url.rstrip("/")
    per = max(1, min(per_token or n, 1_000_000))
    counts = [min(per, n - i) for i in range(0, n, per)]
    sem = asyncio.Semaphore(concurrency)
    headers = {"Authorization": f"Bearer {admin_token.strip()}"}
    async with httpx.AsyncClient(base_url=base, timeout=60.0, verify=verify) as http:

        async def one(uses: int) -> list[str]:
            body = {"model": model, "ttl_s": 86400, "uses": uses}
            try:
                async with sem:
                    r = await http.post(_TOKENS, json=body, headers=headers)
            except httpx.HTTPError as e:
                raise unreachable(base, e) from e
            raise_for_status("POST", _TOKENS, r)
            return [str(r.json()["token"])] * uses

        chunks = await asyncio.gather(*(one(c) for c in counts))
    return [t for chunk in chunks for t in chunk]
