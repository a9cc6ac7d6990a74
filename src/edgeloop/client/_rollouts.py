"""``RolloutClient``: start and steer rollouts on a fleet server over HTTP (the admin API).

::

    client = RolloutClient("http://127.0.0.1:8700", admin_token)
    r = client.start("kws", 3, stages=(1, 10, 50, 100), soak_s=600,
                     gates=("error_rate<0.01", "p99_ms<=1.2*baseline"), cohort="arch=aarch64")
    done = client.wait(r["id"], ("completed", "rolled_back"), timeout_s=3600)

What ``edgeloop rollout`` and ``edgeloop demo`` use; requests and errors go through
:class:`~edgeloop.client.AdminClient` (httpx only underneath).
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from edgeloop.artifacts import RolloutControls
from edgeloop.client._admin import AdminClient
from edgeloop.client._errors import ROLLOUTS_PATH
from edgeloop.errors import RolloutError

__all__ = ["RolloutClient"]


class RolloutClient:
    """Staged rollouts on one fleet server (``/v1/admin/rollouts``)."""

    def __init__(
        self,
        server_url: str,
        admin_token: str,
        *,
        timeout_s: float = 60.0,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        self.admin = AdminClient(server_url, admin_token, timeout_s=timeout_s, verify=verify)

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        return self.admin.call(method, ROLLOUTS_PATH + path, body)

    def start(
        self,
        model: str,
        version: int,
        *,
        stages: Sequence[float] = (1, 10, 50, 100),
        soak_s: float = 600.0,
        gates: Iterable[str] = (),
        cohort: str | Mapping[str, str] | None = None,
        min_devices: int | None = None,
        min_requests: int | None = None,
        alpha: float | None = None,
        switch_timeout_s: float | None = None,
        max_per_minute: int | None = None,
        max_concurrent_downloads: int | None = None,
        download_timeout_s: float | None = None,
        window: str | None = None,
        window_label: str | None = None,
        window_offset: str | None = None,
        max_failures: int | None = None,
        max_failure_rate: float | None = None,
    ) -> dict[str, Any]:
        """Start a rollout of ``model@version`` from the fleet's current version.

        The controls (``max_per_minute`` ... ``max_failure_rate``, see
        :class:`~edgeloop.artifacts.RolloutControls`) are checked here before the request, and
        again by the server."""
        body: dict[str, Any] = {
            "model": model,
            "version": version,
            "stages": [float(p) for p in stages],
            "soak_s": float(soak_s),
            "gates": list(gates),
            "cohort": cohort or {},
        }
        extra: dict[str, Any] = {
            "min_devices": min_devices,
            "min_requests": min_requests,
            "alpha": alpha,
            "switch_timeout_s": switch_timeout_s,
        }
        controls: dict[str, Any] = {
            "max_per_minute": max_per_minute,
            "max_concurrent_downloads": max_concurrent_downloads,
            "download_timeout_s": download_timeout_s,
            "window": window,
            "window_label": window_label,
            "window_offset": window_offset,
            "max_failures": max_failures,
            "max_failure_rate": max_failure_rate,
        }
        controls = {k: v for k, v in controls.items() if v is not None}
        RolloutControls.from_dict(controls)  # InputError naming the bad value, nothing sent
        extra.update(controls)
        body.update({k: v for k, v in extra.items() if v is not None})
        return dict(self._call("POST", "", body))

    def set_controls(
        self,
        rollout_id: int,
        controls: Mapping[str, Any],
        *,
        reason: str | None = None,
    ) -> dict[str, Any]:
        """Replace a running rollout's operator controls (``RolloutControls`` fields; a field
        absent or None is off); checked here before the request, and again by the server.
        The change goes in the rollout's timeline."""
        fields = RolloutControls.__dataclass_fields__
        given = {k: v for k, v in controls.items() if v is not None and k in fields}
        RolloutControls.from_dict(given)  # InputError naming the bad value, nothing sent
        body = dict(given, **({"reason": reason} if reason else {}))
        return dict(self._call("PUT", f"/{rollout_id}/controls", body))

    def get(self, rollout_id: int) -> dict[str, Any]:
        """State, timeline (``events``) and gate checks (``checks``) of one rollout."""
        return dict(self._call("GET", f"/{rollout_id}"))

    def list(self, model: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        query = f"?limit={limit}" + (f"&model={model}" if model else "")
        return list(self._call("GET", query)["rollouts"])

    def _act(self, rollout_id: int, action: str, reason: str | None) -> dict[str, Any]:
        body = {"reason": reason} if reason else {}
        return dict(self._call("POST", f"/{rollout_id}/{action}", body))

    def pause(self, rollout_id: int, reason: str | None = None) -> dict[str, Any]:
        return self._act(rollout_id, "pause", reason)

    def resume(self, rollout_id: int, reason: str | None = None) -> dict[str, Any]:
        return self._act(rollout_id, "resume", reason)

    def abort(self, rollout_id: int, reason: str | None = None) -> dict[str, Any]:
        return self._act(rollout_id, "abort", reason)

    def rollback(self, rollout_id: int, reason: str | None = None) -> dict[str, Any]:
        return self._act(rollout_id, "rollback", reason)

    def wait(
        self,
        rollout_id: int,
        states: Iterable[str] = ("completed", "rolled_back", "aborted"),
        *,
        timeout_s: float = 600.0,
        interval_s: float = 0.5,
        on_change: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Poll until the rollout is in one of ``states``; RolloutError after ``timeout_s``."""
        wanted = set(states)
        deadline = time.monotonic() + timeout_s
        last = None
        while True:
            r = self.get(rollout_id)
            key = (r["state"], r["stage"])
            if on_change is not None and key != last:
                on_change(r)
            last = key
            if r["state"] in wanted:
                return r
            if time.monotonic() >= deadline:
                raise RolloutError(
                    f"rollout {rollout_id} is {r['state']} at stage {r['stage'] + 1} after "
                    f"{timeout_s:g} s; expected one of {', '.join(sorted(wanted))}"
                )
            time.sleep(interval_s)
