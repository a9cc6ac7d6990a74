"""Signed rollback statements: the one way to install a version older than the installed one.

A statement is a standard DSSE envelope (JSON ``{"payload": base64, "payloadType": ...,
"signatures": [...]}``) signed by a release key, whose payload says: for model ``name``, a device
running ``from_version`` may go back to ``to_version`` until ``expires``. H-H's automatic
rollback signs one and ships it with the older bundle; ``verify(..., installed_version=N,
rollback=statement)`` accepts the older bundle only if the statement matches exactly.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgeloop.bundle._format import canonical_json, sign_envelope, verify_envelope
from edgeloop.bundle._trust import Trust
from edgeloop.errors import BundleFormatError, RollbackError

__all__ = [
    "ROLLBACK_TYPE",
    "RollbackStatement",
    "check_rollback",
    "sign_rollback",
    "verify_rollback",
]

ROLLBACK_TYPE = "application/vnd.edgeloop.rollback+json"


@dataclass(frozen=True)
class RollbackStatement:
    name: str
    from_version: int
    to_version: int
    expires: datetime
    reason: str = ""


def _utc(now: datetime | None) -> datetime:
    return now if now is not None else datetime.now(timezone.utc)


def sign_rollback(
    name: str,
    from_version: int,
    to_version: int,
    signing_key: Ed25519PrivateKey,
    *,
    expires_in: timedelta = timedelta(days=7),
    reason: str = "",
    now: datetime | None = None,
) -> bytes:
    if to_version >= from_version:
        raise RollbackError(
            f"a rollback goes to an older version: to_version {to_version} >= {from_version}"
        )
    body = {
        "name": name,
        "from_version": from_version,
        "to_version": to_version,
        "expires": (_utc(now) + expires_in).isoformat(),
        "reason": reason,
    }
    payload = canonical_json(body)
    sigs = json.loads(sign_envelope(payload, [signing_key], ROLLBACK_TYPE))
    sigs["payload"] = base64.b64encode(payload).decode()
    return canonical_json(sigs)


def verify_rollback(data: bytes, trust: Trust) -> RollbackStatement:
    """Check the statement's signature and shape; expiry is checked by :func:`check_rollback`."""
    try:
        env = json.loads(data)
        payload = base64.b64decode(env["payload"], validate=True)
        rest = canonical_json({k: v for k, v in env.items() if k != "payload"})
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error, RecursionError) as e:
        raise BundleFormatError(f"rollback statement is not a DSSE envelope ({e!r})") from e
    verify_envelope(
        payload, rest, dict(trust.release_keys), trust.threshold, ROLLBACK_TYPE, "rollback"
    )
    try:
        body = json.loads(payload)
        st = RollbackStatement(
            name=str(body["name"]),
            from_version=int(body["from_version"]),
            to_version=int(body["to_version"]),
            expires=datetime.fromisoformat(body["expires"]),
            reason=str(body.get("reason", "")),
        )
    except (ValueError, KeyError, TypeError) as e:
        raise BundleFormatError(f"rollback statement payload is malformed ({e!r})") from e
    if st.expires.tzinfo is None:
        raise BundleFormatError(f"rollback statement expiry {body['expires']!r} has no time zone")
    return st


def check_rollback(
    name: str,
    version: int,
    installed_version: int | None,
    rollback: bytes | None,
    trust: Trust,
    now: datetime | None = None,
) -> None:
    """Refuse ``version`` below ``installed_version`` unless a signed statement allows it."""
    if installed_version is None or version >= installed_version:
        return
    if rollback is None:
        raise RollbackError(
            f"bundle {name!r} version {version} is older than installed version "
            f"{installed_version}; a signed rollback statement is required"
        )
    st = verify_rollback(rollback, trust)
    want = (name, installed_version, version)
    have = (st.name, st.from_version, st.to_version)
    if have != want:
        raise RollbackError(
            f"rollback statement allows {st.name!r} {st.from_version} -> {st.to_version}, "
            f"expected {name!r} {installed_version} -> {version}"
        )
    if st.expires <= _utc(now):
        raise RollbackError(f"rollback statement for {name!r} expired at {st.expires.isoformat()}")
