"""What a check-in may reuse: the fleet state and what a signed request needs of its device
(until the database says either changed) and the assignment signed for each device, so an
unchanged assignment is not signed again.

The director runs on every check-in (its policy may depend on time or on rollout state); what
is kept is only the last envelope this process signed for each device, with the assignment's
content (everything but its issue and expiry times). When the director's new answer has the
same content and the kept envelope still has more than half its lifetime left, that envelope
is the answer; when the device says it holds exactly that envelope (``assignment_sha256``,
the sha256 of its payload), the answer is ``unchanged`` and carries no envelope at all.

Per process and bounded (least recently used out first): another process signs afresh,
which is correct, only slower. Nothing here is trusted by the device beyond what it verified
already: an ``unchanged`` answer only confirms the signed assignment it holds, and the agent
stops sending the hash once that assignment is past half its lifetime, so it always holds a
signed, unexpired assignment (docs/fleet-protocol.md).
"""

from __future__ import annotations

import dataclasses
import json
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from sqlalchemy.orm import Session

from edgeloop.artifacts import DeviceProfile
from edgeloop.db import DeviceRow
from edgeloop.fleet import _store as store
from edgeloop.fleet._director import DeltaOffer, FleetState
from edgeloop.protocol import (
    Assignment,
    canonical_json,
    ed25519_from_hex,
    parse_time,
    payload_sha256,
    sign_assignment,
)

__all__ = [
    "DeltaListing",
    "DeviceKeys",
    "FleetStates",
    "KnownDevice",
    "Signed",
    "SignedAssignments",
]


@dataclass(frozen=True)
class Signed:
    envelope: dict[str, Any]
    sha256: str  # of the payload: what the device sends back as ``assignment_sha256``
    fresh: bool  # signed for this answer (False: a kept envelope)


def _content(a: Assignment) -> str:
    """Everything the assignment says but when it was issued and until when: every field,
    those added later (a delta) included, so a change to any of them is signed anew."""
    fields = a.to_dict()
    fields.pop("issued_at", None)
    fields.pop("expires_at", None)
    return canonical_json(fields).decode()


@dataclass(frozen=True)
class _Kept:
    content: str
    signed: Signed
    renew_at: datetime  # past this (half the lifetime), sign a new one


class SignedAssignments:
    """``cache.sign(assignment, key, now)`` -> a kept or freshly signed :class:`Signed`."""

    def __init__(self, max_devices: int = 200_000) -> None:
        self.max_devices = max_devices
        self._kept: OrderedDict[str, _Kept] = OrderedDict()
        self._lock = threading.Lock()
        self.signed = 0  # envelopes signed by this process
        self.reused = 0

    def sign(self, assignment: Assignment, key: Ed25519PrivateKey, now: datetime) -> Signed:
        content = _content(assignment)
        with self._lock:
            kept = self._kept.get(assignment.device_id)
            if kept is not None and kept.content == content and now < kept.renew_at:
                self._kept.move_to_end(assignment.device_id)
                self.reused += 1
                return Signed(kept.signed.envelope, kept.signed.sha256, fresh=False)
        envelope = sign_assignment(assignment, key)
        signed = Signed(envelope, payload_sha256(envelope), fresh=True)
        issued, expires = parse_time(assignment.issued_at), parse_time(assignment.expires_at)
        renew_at = issued + (expires - issued) / 2  # the agent's rule too (agent._agent)
        with self._lock:
            self.signed += 1
            self._kept[assignment.device_id] = _Kept(content, signed, renew_at)
            self._kept.move_to_end(assignment.device_id)
            while len(self._kept) > self.max_devices:
                self._kept.popitem(last=False)
        return signed

    def forget(self, device_id: str) -> None:
        with self._lock:
            self._kept.pop(device_id, None)


class FleetStates:
    """The director's fleet state per model, cached in this process until the database's
    generation counter (``fleet_generation``, bumped by triggers on releases, variants,
    aliases, models and versions) moves: one indexed read per check-in instead of three."""

    def __init__(self, alias: str) -> None:
        self.alias = alias
        self._generation: int | None = None
        self._states: dict[str | None, FleetState] = {}
        self._lock = threading.Lock()
        self.reads = 0  # fleet states read from the database (cache misses)

    @staticmethod
    def generation(s: Session) -> int | None:
        """The database's generation counter, read once in the request's transaction."""
        return store.generation(s)

    def get(
        self, s: Session, device: store.DeviceFields, generation: int | None = None
    ) -> FleetState:
        """``generation``: the counter as this request read it already (else read here)."""
        if generation is None:
            generation = self.generation(s)
        with self._lock:
            if generation is None or generation != self._generation:
                self._states.clear()
                self._generation = generation
            state = self._states.get(device.model)
        if state is None:
            state = store.fleet_state(s, device, self.alias)
            with self._lock:
                self.reads += 1
                if generation is not None and generation == self._generation:
                    self._states[device.model] = state
        return state


@dataclass(frozen=True)
class KnownDevice:
    """What a signed request needs of its device, as this process keeps it (:class:`DeviceKeys`)."""

    id: str
    key: Ed25519PublicKey
    revoked: bool
    model: str | None
    labels: dict[str, Any]
    profile: dict[str, Any] | None
    # ``profile`` parsed, one object per distinct profile (devices of one kind share it)
    device_profile: DeviceProfile | None = None


class DeviceKeys:
    """Each device's public key, revocation, model, labels and profile, kept in this process
    while the database's generation counter stays where it was: triggers (revision 0014) bump
    it in the same transaction that revokes a device, changes its key, model, labels or
    profile, or deletes it, whichever process or command does it. A request reads the counter
    in its own transaction, so a revocation committed before the request began refuses it in
    every process: no grace period. A check-in's own writes (last seen, installed, health)
    leave the counter alone. Bounded, least recently used out first."""

    def __init__(self, max_devices: int = 200_000) -> None:
        self.max_devices = max_devices
        self._generation: int | None = None
        self._kept: OrderedDict[str, KnownDevice] = OrderedDict()
        self._lock = threading.Lock()
        self.reads = 0  # devices read from the database (misses)
        self._profiles: dict[str, DeviceProfile] = {}  # by content: parsed once per kind

    def _parsed(self, profile: dict[str, Any] | None) -> DeviceProfile | None:
        """``profile`` as a ``DeviceProfile``, shared by every device that enrolled the same
        one: parsing it was a measurable part of each check-in (docs/scale.md)."""
        if not profile:
            return None
        key = json.dumps(profile, sort_keys=True)
        parsed = self._profiles.get(key)
        if parsed is None:
            parsed = DeviceProfile.from_dict(profile)
            with self._lock:
                if len(self._profiles) >= 4096:  # bounded: a fleet of that many kinds re-parses
                    self._profiles.clear()
                self._profiles[key] = parsed
        return parsed

    def get(self, s: Session, device_id: str, generation: int | None) -> KnownDevice | None:
        """The device (None: not enrolled here), read in ``s`` unless kept for ``generation``."""
        with self._lock:
            if generation is None or generation != self._generation:
                self._kept.clear()
                self._generation = generation
            kept = self._kept.get(device_id)
            if kept is not None:
                self._kept.move_to_end(device_id)
                return kept
        row = s.execute(_DEVICE, {"device_id": device_id}).first()
        if row is None:
            return None
        known = KnownDevice(
            id=str(row.id),
            key=ed25519_from_hex(row.signing_key),
            revoked=bool(row.revoked),
            model=row.model,
            labels=dict(row.labels or {}),
            profile=row.profile,
            device_profile=self._parsed(row.profile),
        )
        with self._lock:
            self.reads += 1
            if generation is not None and generation == self._generation:
                self._kept[device_id] = known
                while len(self._kept) > self.max_devices:
                    self._kept.popitem(last=False)
        return known


_DEVICES: Any = DeviceRow.__table__
_DEVICE = sa.select(
    _DEVICES.c.id,
    _DEVICES.c.signing_key,
    _DEVICES.c.revoked,
    _DEVICES.c.model,
    _DEVICES.c.labels,
    _DEVICES.c.profile,
).where(_DEVICES.c.id == sa.bindparam("device_id"))


class DeltaListing:
    """The deltas the TUF repository lists (``edgeloop release --deltas``), by (base bundle
    sha256, target bundle sha256), for the director; re-read only when ``timestamp.json``
    changed (every repository write re-signs it), so a check-in costs one ``stat``."""

    def __init__(self, tuf_path: Path, keyring: Any) -> None:
        self.tuf_path, self.keyring = Path(tuf_path), keyring
        self._key: tuple[int, int, int] | None = None
        self._offers: dict[tuple[str, str], DeltaOffer] = {}
        self._lock = threading.Lock()

    def offers(self) -> dict[tuple[str, str], DeltaOffer]:
        try:
            st = (self.tuf_path / "metadata" / "timestamp.json").stat()
        except OSError:
            return {}
        key = (st.st_mtime_ns, st.st_size, st.st_ino)
        with self._lock:
            if key == self._key:
                return self._offers
        from edgeloop.errors import EdgeloopError
        from edgeloop.update import Repository

        offers: dict[tuple[str, str], DeltaOffer] = {}
        try:
            listed = Repository(self.tuf_path, self.keyring).targets()
        except EdgeloopError:
            return {}  # a repository mid-write: no deltas this time, full bundles still work
        for path, info in listed.items():
            custom = info.unrecognized_fields.get("custom")
            d = custom.get("delta") if isinstance(custom, dict) else None
            if not isinstance(d, dict):
                continue
            base, target = d.get("base_sha256"), d.get("bundle_sha256")
            sha = info.hashes.get("sha256")
            if not (isinstance(base, str) and isinstance(target, str) and isinstance(sha, str)):
                continue
            offer = DeltaOffer(path, sha, int(info.length))
            old = offers.get((base, target))
            if old is None or offer.length < old.length:
                offers[(base, target)] = offer
        with self._lock:
            self._key, self._offers = key, offers
        return offers

    def apply(self, fleet: FleetState) -> FleetState:
        offers = self.offers()
        return dataclasses.replace(fleet, deltas=offers) if offers else fleet
