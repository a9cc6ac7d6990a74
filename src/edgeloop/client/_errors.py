"""The one mapping from the fleet server's HTTP answers to :class:`~edgeloop.errors.EdgeloopError`.

::

    transport failure (no answer)            -> FleetError   "cannot reach the fleet server at URL"
    401, 403                                 -> AuthError    (wrong or missing admin token)
    404, 409 on /v1/admin/rollouts...        -> RolloutError (no such rollout, not in that state)
    any other status >= 400                  -> FleetError

Every message names the request and carries the server's ``detail`` (its one-line reason).
"""

from __future__ import annotations

import httpx

from edgeloop.errors import AuthError, EdgeloopError, FleetError, RolloutError

__all__ = ["ROLLOUTS_PATH", "error_for", "raise_for_status", "unreachable"]

ROLLOUTS_PATH = "/v1/admin/rollouts"


def _detail(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return response.text[:300]
    detail = data.get("detail") if isinstance(data, dict) else None
    return str(detail) if detail is not None else response.text[:300]


def error_for(method: str, path: str, status: int, detail: str) -> EdgeloopError:
    """The error for a refused admin request (``status`` >= 400)."""
    where = f"{method} {path} -> {status}: {detail}"
    if status in (401, 403):
        return AuthError(where)
    if status in (404, 409) and path.startswith(ROLLOUTS_PATH):
        return RolloutError(where)
    return FleetError(where)


def raise_for_status(method: str, path: str, response: httpx.Response) -> None:
    """Raise :func:`error_for`'s error when ``response`` is a refusal; nothing otherwise."""
    if response.status_code >= 400:
        raise error_for(method, path, response.status_code, _detail(response))


def unreachable(base: str, error: httpx.HTTPError) -> FleetError:
    """The error for a request that got no answer (refused connection, timeout, reset)."""
    return FleetError(f"cannot reach the fleet server at {base}: {error}")
