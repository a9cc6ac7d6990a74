"""``AdminClient``: the fleet server's admin API over HTTP (httpx only, no server code).

::

    admin = AdminClient("http://127.0.0.1:8700", admin_token)
    token = admin.create_token(model="kws")["token"]
    admin.publish("kws", 3)
    admin.set_desired("kws", 3)

What ``edgeloop fleet`` and the demo use; ``RolloutClient`` (``_rollouts``) and
:func:`create_tokens` (many tokens at once, for the simulator) share its error mapping.
"""

from __future__ import annotations

import dataclasses
import ssl
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

import httpx

from edgeloop.bundle import DIRECTOR_FIELD
from edgeloop.client._errors import raise_for_status, unreachable
from edgeloop.errors import InputError, KeyError_
from edgeloop.protocol import Provisioning

__all__ = ["AdminClient"]


class AdminClient:
    """One fleet server's admin API, authenticated with its bearer admin token."""

    def __init__(
        self,
        server_url: str,
        admin_token: str,
        *,
        timeout_s: float = 60.0,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        self.base = server_url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {admin_token.strip()}"}
        self.timeout_s = timeout_s
        self.verify = verify  # a pinned CA: edgeloop.protocol.tls_context(ca_pem)

    def call(self, method: str, path: str, body: Any = None) -> Any:
        """``method path`` with a JSON ``body``; the answer's JSON, or the mapped error."""
        try:
            r = httpx.request(
                method,
                self.base + path,
                json=body,
                headers=self.headers,
                timeout=self.timeout_s,
                verify=self.verify,
            )
        except httpx.HTTPError as e:
            raise unreachable(self.base, e) from e
        raise_for_status(method, path, r)
        return r.json()

    def create_token(
        self,
        *,
        model: str | None = None,
        ttl_s: float = 86400.0,
        labels: Mapping[str, str] | None = None,
        uses: int = 1,
    ) -> dict[str, Any]:
        """An enrollment token (``token``, ``expires_at``, ...); one-time unless ``uses`` > 1."""
        body = {"model": model, "ttl_s": ttl_s, "labels": dict(labels or {}), "uses": uses}
        return dict(self.call("POST", "/v1/admin/tokens", body))

    def devices(self) -> list[dict[str, Any]]:
        """The device inventory."""
        return list(self.call("GET", "/v1/admin/devices")["devices"])

    def find_devices(
        self,
        *,
        version: str | None = None,
        hardware: str | None = None,
        state: str | None = None,
        label: str | None = None,
        seen: str | None = None,
        page: int = 1,
        per_page: int = 100,
    ) -> dict[str, Any]:
        """One page of the devices matching the filters (``version="kws@2"`` or ``"none"``,
        ``hardware`` (profile name), ``state`` (ok, degraded, failing, unknown, offline,
        revoked), ``label="region=eu"``, ``seen="<10m"`` or ``">1d"``), filtered and counted
        by the server's database: ``devices`` (each with its ``state``), ``matched``, ``page``,
        ``pages``, ``per_page``, ``counts`` (by state, version, hardware) and ``total``."""
        given = {
            "version": version,
            "hardware": hardware,
            "state": state,
            "label": label,
            "seen": seen,
            "page": page,
            "per_page": per_page,
        }
        query = urlencode({k: v for k, v in given.items() if v is not None})
        return dict(self.call("GET", f"/v1/admin/devices?{query}"))

    def device(self, device_id: str) -> dict[str, Any]:
        """One device with its latest telemetry reports."""
        return dict(self.call("GET", f"/v1/admin/devices/{device_id}"))

    def revoke(self, device_id: str) -> dict[str, Any]:
        """Revoke a device: its requests are refused (403) from now on."""
        return dict(self.call("POST", f"/v1/admin/devices/{device_id}/revoke"))

    def publish(self, model: str, version: int) -> dict[str, Any]:
        """Publish a registry version's bundles to the fleet's TUF repository."""
        body = {"model": model, "version": version}
        return dict(self.call("POST", "/v1/admin/releases", body))

    def set_desired(self, model: str, version: int) -> dict[str, Any]:
        """Make ``model@version`` (published) what every device of the model should run."""
        body = {"version": version}
        return dict(self.call("PUT", f"/v1/admin/models/{model}/desired", body))

    def releases(self, model: str | None = None) -> list[dict[str, Any]]:
        """Published releases and their variants."""
        path = "/v1/admin/releases" + (f"?model={model}" if model else "")
        return list(self.call("GET", path)["releases"])

    def trust(self) -> dict[str, Any]:
        """The TUF root and director key devices pin (``/v1/admin/trust``)."""
        return dict(self.call("GET", "/v1/admin/trust"))

    def provision(
        self,
        *,
        server_url: str | None = None,
        ca_pem: str | None = None,
        model: str | None = None,
        labels: Mapping[str, str] | None = None,
        ttl_s: float = 86400.0,
        uses: int = 1,
        tuf_root: dict[str, Any] | None = None,
    ) -> Provisioning:
        """A device image's trust: a fresh enrollment token, the root, the director key.

        ``server_url``: the URL devices use (default: this client's); ``tuf_root``: the root
        from the build machine's keys directory instead of the server's copy (it must name the
        same director key when it names one).
        """
        trust = self.trust()
        root = tuf_root if tuf_root is not None else trust["tuf_root"]
        named = root.get("signed", {}).get(DIRECTOR_FIELD, {}).get("keys", {})
        if named and trust["director_keyid"] not in named:
            raise KeyError_(
                f"the given root names director key(s) {sorted(k[:16] for k in named)}, but "
                f"the server signs with {trust['director_keyid'][:16]}"
            )
        try:  # checked before a token is spent on it
            image = Provisioning(
                server_url=(server_url or self.base).rstrip("/"),
                tuf_root=root,
                director_key=trust["director_key"],
                director_keyid=trust["director_keyid"],
                ca_pem=ca_pem,
                labels=dict(labels or {}),
            )
        except ValueError as e:
            raise InputError(f"provisioning file: {e}") from e
        token = self.create_token(model=model, ttl_s=ttl_s, labels=labels, uses=uses)["token"]
        return dataclasses.replace(image, enroll_token=str(token))
