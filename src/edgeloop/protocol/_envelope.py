"""Signed assignments: a DSSE envelope over the canonical JSON of an :class:`Assignment`.

The director (server) signs with its Ed25519 key; the agent verifies with the key it pinned at
enrollment. ``PAE`` is DSSE's pre-authentication encoding, the same envelope
``edgeloop.bundle`` uses for manifests. Pure: no I/O, the clock is an argument.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from edgeloop.errors import EdgeloopError, SignatureError
from edgeloop.protocol._messages import Assignment, parse_time

__all__ = [
    "ASSIGNMENT_TYPE",
    "canonical_json",
    "pae",
    "payload_sha256",
    "public_key_id",
    "sign_assignment",
    "verify_assignment",
]

ASSIGNMENT_TYPE = "application/vnd.edgeloop.assignment+json"


def canonical_json(data: Any) -> bytes:
    """Sorted keys, no spaces, UTF-8: the bytes that get signed."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding."""
    t = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


def public_key_id(key: Ed25519PublicKey | Ed25519PrivateKey) -> str:
    """Hex sha256 of the raw public key bytes (the same id ``edgeloop.bundle`` gives a key)."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def sign_assignment(assignment: Assignment, key: Ed25519PrivateKey) -> dict[str, Any]:
    """The DSSE envelope the check-in response carries."""
    payload = canonical_json(assignment.to_dict())
    sig = key.sign(pae(ASSIGNMENT_TYPE, payload))
    return {
        "payloadType": ASSIGNMENT_TYPE,
        "payload": base64.b64encode(payload).decode("ascii"),
        "signatures": [{"keyid": public_key_id(key), "sig": base64.b64encode(sig).decode("ascii")}],
    }


def payload_sha256(envelope: Mapping[str, Any]) -> str:
    """Hex sha256 of an assignment envelope's payload bytes: what a device holding it sends
    as ``assignment_sha256`` (the server then answers ``unchanged`` rather than re-signing)."""
    return hashlib.sha256(_b64(envelope.get("payload"), "payload")).hexdigest()


def _b64(value: Any, where: str) -> bytes:
    if not isinstance(value, str):
        raise SignatureError(f"assignment envelope {where}: expected base64 text, got {value!r}")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as e:
        raise SignatureError(f"assignment envelope {where}: not base64 ({e})") from e


def verify_assignment(
    envelope: Mapping[str, Any],
    director_key: Ed25519PublicKey,
    *,
    device_id: str | None = None,
    now: datetime | None = None,
) -> Assignment:
    """Verify the director's signature, then the device id and expiry; return the assignment.

    Raises :class:`SignatureError` for a bad, missing or foreign signature, a wrong device id or
    an expired assignment. Nothing in the payload is parsed before the signature checks out.
    """
    if not isinstance(envelope, Mapping):
        raise SignatureError(f"assignment envelope: expected a JSON object, got {envelope!r:.60}")
    if envelope.get("payloadType") != ASSIGNMENT_TYPE:
        raise SignatureError(
            f"assignment envelope payloadType {envelope.get('payloadType')!r}, "
            f"expected {ASSIGNMENT_TYPE!r}"
        )
    payload = _b64(envelope.get("payload"), "payload")
    sigs = envelope.get("signatures")
    if not isinstance(sigs, list) or not sigs:
        raise SignatureError("assignment envelope has no signatures")
    want = public_key_id(director_key)
    message = pae(ASSIGNMENT_TYPE, payload)
    verified = False
    for entry in sigs:
        if not isinstance(entry, Mapping) or entry.get("keyid") != want:
            continue
        try:
            director_key.verify(_b64(entry.get("sig"), "signatures.sig"), message)
            verified = True
            break
        except InvalidSignature:
            continue
    if not verified:
        ids = ", ".join(str(s.get("keyid", "?"))[:16] for s in sigs if isinstance(s, Mapping))
        raise SignatureError(
            f"assignment is not signed by the pinned director key {want[:16]} (signed by: {ids})"
        )
    try:
        assignment = Assignment.from_dict(json.loads(payload))
    except (EdgeloopError, ValueError, RecursionError) as e:
        raise SignatureError(f"signed assignment payload is malformed: {e}") from e
    if device_id is not None and assignment.device_id != device_id:
        raise SignatureError(
            f"assignment is for device {assignment.device_id!r}, expected {device_id!r}"
        )
    if now is not None and parse_time(assignment.expires_at) <= now:
        raise SignatureError(
            f"assignment expired at {assignment.expires_at}; the server must issue a fresh one"
        )
    return assignment
