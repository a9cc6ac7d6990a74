"""The JSON bodies of the fleet protocol, one frozen dataclass each (docs/fleet-protocol.md).

They share :class:`edgeloop.artifacts.Artifact`'s ``to_dict``/``from_dict``: unknown fields are
kept, so an older agent talks to a newer server. ``__post_init__`` checks types and ranges, so
``from_dict`` on a malformed body raises :class:`~edgeloop.errors.InputError` naming the field.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, ClassVar

from edgeloop.artifacts import Artifact, DeviceProfile

__all__ = [
    "HEALTH_STATES",
    "Assignment",
    "CheckIn",
    "CheckInResponse",
    "DeviceInfo",
    "EnrollRequest",
    "Enrollment",
    "InstalledModel",
    "KeyRequest",
    "Release",
    "TokenInfo",
    "TokenRequest",
    "Variant",
    "WrappedKey",
    "iso_time",
    "parse_time",
]

HEALTH_STATES = ("ok", "degraded", "failing", "unknown")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


def iso_time(dt: datetime) -> str:
    """``2026-11-24T18:30:00Z``: UTC, whole seconds."""
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> datetime:
    """Parse an ISO 8601 time (``Z`` or an offset); naive times are taken as UTC."""
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (ValueError, AttributeError, TypeError) as e:
        raise ValueError(f"time {text!r} is not ISO 8601 (e.g. 2026-11-24T18:30:00Z)") from e
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def _need(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _hex64(value: Any, name: str) -> None:
    _need(
        isinstance(value, str) and bool(_HEX64.fullmatch(value)),
        f"{name} {value!r:.80}: expected 64 lower-case hex digits",
    )


def _name(value: Any, name: str) -> None:
    _need(
        isinstance(value, str) and bool(_NAME.fullmatch(value)),
        f"{name} {value!r:.80}: expected a name of [A-Za-z0-9_.-]",
    )


@dataclass(frozen=True)
class InstalledModel(Artifact):
    """A model a device holds: what it runs now, or its known-good slot."""

    KIND: ClassVar[str] = "installed_model"
    model: str
    version: int
    variant: str = ""
    sha256: str = ""

    def __post_init__(self) -> None:
        _name(self.model, "model")
        _need(
            _int(self.version) and self.version >= 0,
            f"version {self.version!r}: expected an int >= 0",
        )
        _need(isinstance(self.variant, str), f"variant {self.variant!r}: expected text")
        _need(isinstance(self.sha256, str), f"sha256 {self.sha256!r}: expected text")


@dataclass(frozen=True)
class Assignment(Artifact):
    """What the director tells one device to run; travels signed (see ``sign_assignment``)."""

    KIND: ClassVar[str] = "assignment"
    OMIT_NONE: ClassVar[frozenset[str]] = frozenset({"delta"})
    device_id: str
    model: str
    version: int
    variant: str
    target: str
    sha256: str
    length: int
    issued_at: str
    expires_at: str
    rollback: bool = False
    reason: str = ""
    # the director's pick of a delta to ``target`` from the bundle the device runs:
    # {"target": TUF path of the .eld, "sha256", "length"}; None: download the full bundle
    delta: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        _name(self.device_id, "device_id")
        if self.delta is not None:
            d = self.delta
            _need(isinstance(d, dict), f"delta {d!r:.80}: expected an object or null")
            _need(
                isinstance(d.get("target"), str) and bool(d["target"]),
                f"delta.target {d.get('target')!r:.80}: expected a TUF target path",
            )
            _hex64(d.get("sha256"), "delta.sha256")
            _need(
                _int(d.get("length")) and d["length"] >= 0,
                f"delta.length {d.get('length')!r:.40}: expected an int >= 0",
            )
        _name(self.model, "model")
        _need(
            _int(self.version) and self.version >= 0,
            f"version {self.version!r}: expected an int >= 0",
        )
        _need(
            isinstance(self.target, str) and bool(self.target),
            f"target {self.target!r}: expected a TUF target path",
        )
        _hex64(self.sha256, "sha256")
        _need(
            _int(self.length) and self.length >= 0, f"length {self.length!r}: expected an int >= 0"
        )
        _need(
            isinstance(self.rollback, bool), f"rollback {self.rollback!r}: expected true or false"
        )
        parse_time(self.issued_at)
        parse_time(self.expires_at)


@dataclass(frozen=True)
class EnrollRequest(Artifact):
    KIND: ClassVar[str] = "enroll_request"
    token: str
    signing_key: str  # hex of the raw Ed25519 public key
    encryption_key: str  # hex of the raw X25519 public key
    profile: DeviceProfile
    agent_version: str
    name: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    agent_build: str | None = None  # sha256 of the agent's installed files (agent._integrity)

    def __post_init__(self) -> None:
        _need(isinstance(self.token, str) and 0 < len(self.token) <= 256, "token: expected text")
        if self.agent_build is not None:
            _hex64(self.agent_build, "agent_build")
        _hex64(self.signing_key, "signing_key")
        _hex64(self.encryption_key, "encryption_key")
        _need(isinstance(self.profile, DeviceProfile), "profile: expected a DeviceProfile object")
        _need(
            isinstance(self.agent_version, str),
            f"agent_version {self.agent_version!r}: expected text",
        )
        _need(self.name is None or isinstance(self.name, str), f"name {self.name!r}: expected text")
        _need(
            isinstance(self.labels, dict)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in self.labels.items()),
            "labels: expected an object of text values",
        )


@dataclass(frozen=True)
class Enrollment(Artifact):
    """The server's answer to a successful enrollment: what the agent must pin and keep."""

    KIND: ClassVar[str] = "enrollment"
    device_id: str
    director_key: dict[str, Any]
    director_keyid: str
    tuf_root: dict[str, Any]
    tuf_metadata_url: str = "/tuf/metadata/"
    tuf_targets_url: str = "/tuf/targets/"
    poll_interval_s: float = 60.0
    server_time: str | None = None


@dataclass(frozen=True)
class CheckIn(Artifact):
    KIND: ClassVar[str] = "checkin"
    agent_version: str
    installed: InstalledModel | None = None
    known_good: InstalledModel | None = None
    health: str = "unknown"
    last_error: str | None = None
    profile: DeviceProfile | None = None
    agent_build: str | None = None  # sha256 of the agent's installed files (agent._integrity)
    # sha256 of the payload of the signed assignment the device holds: the server answers
    # ``unchanged`` instead of signing the same assignment again (docs/fleet-protocol.md)
    assignment_sha256: str | None = None

    def __post_init__(self) -> None:
        _need(
            isinstance(self.agent_version, str),
            f"agent_version {self.agent_version!r}: expected text",
        )
        if self.agent_build is not None:
            _hex64(self.agent_build, "agent_build")
        if self.assignment_sha256 is not None:
            _hex64(self.assignment_sha256, "assignment_sha256")
        _need(
            self.health in HEALTH_STATES,
            f"health {self.health!r}: expected one of {', '.join(HEALTH_STATES)}",
        )
        _need(
            self.last_error is None or isinstance(self.last_error, str),
            "last_error: expected text or null",
        )
        for name in ("installed", "known_good"):
            value = getattr(self, name)
            _need(
                value is None or isinstance(value, InstalledModel),
                f"{name}: expected an object or null",
            )
        _need(
            self.profile is None or isinstance(self.profile, DeviceProfile),
            "profile: expected an object or null",
        )


@dataclass(frozen=True)
class CheckInResponse(Artifact):
    KIND: ClassVar[str] = "checkin_response"
    device_id: str
    assignment: dict[str, Any] | None  # a DSSE envelope; verify with ``verify_assignment``
    poll_interval_s: float
    server_time: str
    # True (and ``assignment`` null): the assignment is the one whose payload hash the device
    # sent; it keeps acting on that one
    unchanged: bool = False


@dataclass(frozen=True)
class KeyRequest(Artifact):
    KIND: ClassVar[str] = "key_request"
    target: str

    def __post_init__(self) -> None:
        _need(
            isinstance(self.target, str) and 0 < len(self.target) <= 512,
            f"target {self.target!r:.80}: expected a TUF target path",
        )


@dataclass(frozen=True)
class WrappedKey(Artifact):
    """A bundle's data key wrapped for one device: an ``encryption.recipients`` entry."""

    KIND: ClassVar[str] = "wrapped_key"
    target: str
    recipient: dict[str, Any]


@dataclass(frozen=True)
class TokenRequest(Artifact):
    KIND: ClassVar[str] = "token_request"
    model: str | None = None
    ttl_s: float = 86400.0
    labels: dict[str, str] = field(default_factory=dict)
    uses: int = 1  # how many devices may enroll with it (1: a one-time token)

    def __post_init__(self) -> None:
        if self.model is not None:
            _name(self.model, "model")
        _need(
            _int(self.uses) and 1 <= self.uses <= 1_000_000,
            f"uses {self.uses!r}: expected an int in [1, 1000000]",
        )
        _need(
            isinstance(self.ttl_s, int | float)
            and not isinstance(self.ttl_s, bool)
            and 0 < self.ttl_s <= 366 * 86400,
            f"ttl_s {self.ttl_s!r}: expected seconds in (0, 366 days]",
        )
        _need(isinstance(self.labels, dict), "labels: expected an object")


@dataclass(frozen=True)
class TokenInfo(Artifact):
    KIND: ClassVar[str] = "token_info"
    token: str
    expires_at: str
    model: str | None = None
    uses: int = 1


@dataclass(frozen=True)
class Variant(Artifact):
    """One bundle of a release and what a device needs to run it."""

    KIND: ClassVar[str] = "variant"
    variant: str
    target: str
    sha256: str
    length: int
    requires: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Release(Artifact):
    """A registry version published to the fleet's TUF repository, with its variants."""

    KIND: ClassVar[str] = "release"
    model: str
    version: int
    variants: tuple[Variant, ...] = ()
    published_at: str | None = None


@dataclass(frozen=True)
class DeviceInfo(Artifact):
    """One row of the device inventory, as the admin API returns it."""

    KIND: ClassVar[str] = "device_info"
    device_id: str
    enrolled_at: str
    revoked: bool = False
    name: str | None = None
    model: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    last_seen: str | None = None
    agent_version: str | None = None
    profile: DeviceProfile | None = None
    installed: InstalledModel | None = None
    known_good: InstalledModel | None = None
    health: str = "unknown"
    last_error: str | None = None
    online: bool = False  # heard from within three poll intervals
