"""The server's typed app state (``app.state.fleet``): what routes share besides configuration.

Routes take it through the :func:`app_state` dependency instead of closing over ``create_app``'s
locals, so each router can live in a module of its own and be read on its own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from fastapi import Request
from sqlalchemy.orm import Session

from edgeloop.fleet._batch import CheckinWriter
from edgeloop.fleet._director import Policy
from edgeloop.fleet._http import ServerContext
from edgeloop.fleet._metrics import FleetMetrics
from edgeloop.fleet._signed import DeltaListing, DeviceKeys, FleetStates, SignedAssignments
from edgeloop.protocol import public_hex

__all__ = ["AppState", "PolicyLoader", "app_state"]

# Given the check-in's open session, the policy for this request (rollouts read their state).
PolicyLoader = Callable[[Session], Policy]


@dataclass(frozen=True)
class AppState:
    """One server's shared objects: its configuration, its metrics, its director policy, the
    check-in's group commit and the assignments it signed (docs/scale.md)."""

    ctx: ServerContext
    metrics: FleetMetrics
    policy_loader: PolicyLoader
    writer: CheckinWriter
    signed: SignedAssignments
    fleet_states: FleetStates
    deltas: DeltaListing | None = None  # listed deltas the director may assign
    devices: DeviceKeys = field(default_factory=DeviceKeys)  # signed requests' devices, kept

    @property
    def director_key(self) -> dict[str, Any]:
        """The director's public key as TUF writes a key (sent to devices at enrollment)."""
        return {
            "keytype": "ed25519",
            "scheme": "ed25519",
            "keyval": {"public": public_hex(self.ctx.secrets.director_key)},
        }

    @property
    def assignment_ttl(self) -> timedelta:
        return timedelta(seconds=self.ctx.settings.assignment_ttl_s)

    @property
    def report_retention(self) -> timedelta:
        return timedelta(seconds=self.ctx.settings.report_retention_s)


def app_state(request: Request) -> AppState:
    """The FastAPI dependency that hands a route its server's :class:`AppState`."""
    state: AppState = request.app.state.fleet
    return state
