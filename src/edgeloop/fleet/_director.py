"""The director: which bundle each device should run. Pure: values in, an assignment out.

::

    direct(device, fleet, now=..., policy=default_policy) -> Assignment | None
        1. the device's model: its own, or the fleet's only model with a desired version
        2. policy(device, model, fleet) -> (release, reason) | None   <- the pluggable hook
        3. select_variant(device.profile, release.variants)           -> the variant that fits
        4. rollback = the release is older than what the device reports installed
        5. delta = a listed delta from the bundle the device runs to the variant's, when it is
           smaller (``FleetState.deltas``); the device then downloads that instead

Staged rollouts (issue 7) plug in by passing another ``policy``: it sees the same values and
may return another release for some devices (a canary stage), or the previous one (a rollback).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from edgeloop.artifacts import DeviceProfile
from edgeloop.protocol import Assignment, InstalledModel, Release, Variant, iso_time

__all__ = [
    "DeltaOffer",
    "DeviceState",
    "FleetState",
    "Policy",
    "default_policy",
    "device_model",
    "direct",
    "select_variant",
    "variant_fits",
]


@dataclass(frozen=True)
class DeviceState:
    """What the director knows about one device (from its enrollment and last check-in)."""

    device_id: str
    model: str | None = None
    profile: DeviceProfile | None = None
    installed: InstalledModel | None = None
    known_good: InstalledModel | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    health: str = "unknown"
    last_error: str | None = None  # the agent's last install or model failure, as reported


@dataclass(frozen=True)
class DeltaOffer:
    """A delta target the signed TUF targets list (``update.Repository.write_deltas``)."""

    target: str
    sha256: str
    length: int


@dataclass(frozen=True)
class FleetState:
    """Published releases per model (any order) and each model's desired version (its alias);
    ``deltas``: listed deltas by (base bundle sha256, target bundle sha256)."""

    releases: Mapping[str, Sequence[Release]] = field(default_factory=dict)
    desired: Mapping[str, int] = field(default_factory=dict)
    alias: str = "production"
    deltas: Mapping[tuple[str, str], DeltaOffer] = field(default_factory=dict)

    def release(self, model: str, version: int) -> Release | None:
        return next((r for r in self.releases.get(model, ()) if r.version == version), None)


class Policy(Protocol):
    """Choose the release a device should run, with a reason; None leaves it unassigned."""

    def __call__(
        self, device: DeviceState, model: str, fleet: FleetState
    ) -> tuple[Release, str] | None: ...


def default_policy(
    device: DeviceState, model: str, fleet: FleetState
) -> tuple[Release, str] | None:
    """Every device runs the version the model's alias points at, once it is published."""
    version = fleet.desired.get(model)
    if version is None:
        return None
    release = fleet.release(model, version)
    if release is None:
        return None
    return release, f"alias {fleet.alias} -> {version}"


def device_model(device: DeviceState, fleet: FleetState) -> str | None:
    """The device's own model, else the fleet's only model with a desired version."""
    if device.model is not None:
        return device.model
    if len(fleet.desired) == 1:
        return next(iter(fleet.desired))
    return None


def _list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


def _specificity(requires: Mapping[str, Any]) -> int:
    score = len(_list(requires.get("isa")))
    score += sum(1 for k in ("arch", "providers", "min_memory_mb") if requires.get(k))
    return score


def variant_fits(requires: Mapping[str, Any], profile: DeviceProfile | None) -> bool:
    """Whether a device with ``profile`` meets a variant's ``requires`` (see the protocol doc)."""
    if _specificity(requires) == 0:
        return True
    if profile is None:
        return False
    isa = {f.lower() for f in profile.isa}
    if not all(f.lower() in isa for f in _list(requires.get("isa"))):
        return False
    arch = _list(requires.get("arch"))
    if arch and profile.arch not in arch:
        return False
    providers = _list(requires.get("providers"))
    if providers and not set(providers) & set(profile.providers):
        return False
    need_mb = requires.get("min_memory_mb")
    if need_mb:
        have = profile.memory_total_mb
        if have is None or have < float(need_mb):
            return False
    return True


def select_variant(profile: DeviceProfile | None, variants: Sequence[Variant]) -> Variant | None:
    """The most specific variant the device satisfies (ties broken by name), or None."""
    fitting = [v for v in variants if variant_fits(v.requires, profile)]
    if not fitting:
        return None
    return min(fitting, key=lambda v: (-_specificity(v.requires), v.variant))


def direct(
    device: DeviceState,
    fleet: FleetState,
    *,
    now: datetime,
    ttl: timedelta = timedelta(days=1),
    policy: Policy = default_policy,
) -> Assignment | None:
    """The assignment for ``device``, or None when no published release fits it."""
    model = device_model(device, fleet)
    if model is None:
        return None
    choice = policy(device, model, fleet)
    if choice is None:
        return None
    release, reason = choice
    variant = select_variant(device.profile, release.variants)
    if variant is None:
        return None
    installed = device.installed
    rollback = (
        installed is not None and installed.model == model and release.version < installed.version
    )
    delta = None
    if installed is not None and installed.sha256 and installed.sha256 != variant.sha256:
        offer = fleet.deltas.get((installed.sha256, variant.sha256))
        if offer is not None and offer.length < variant.length:
            delta = {"target": offer.target, "sha256": offer.sha256, "length": offer.length}
    return Assignment(
        device_id=device.device_id,
        model=model,
        version=release.version,
        variant=variant.variant,
        target=variant.target,
        sha256=variant.sha256,
        length=variant.length,
        issued_at=iso_time(now),
        expires_at=iso_time(now + ttl),
        rollback=rollback,
        reason=reason,
        delta=delta,
    )
