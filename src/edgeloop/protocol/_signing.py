"""Device request signatures: Ed25519 over method, path, body digest, timestamp and a nonce.

The signed message is seven lines (see docs/fleet-protocol.md)::

    edgeloop-request-v1
    POST
    /v1/checkin
    d-5f0c...
    1795545000
    9f86d081884c7d65
    <hex sha256 of the body>

Everything here is pure: values in, values out. ``verify_request`` checks the signature and the
clock skew; whether a nonce was seen before is the server's business (its database), so a
replay is caught by every process serving the fleet.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from edgeloop.errors import AuthError

__all__ = [
    "ENROLL_DEVICE_ID",
    "HEADER_DEVICE",
    "HEADER_NONCE",
    "HEADER_SIGNATURE",
    "HEADER_TIMESTAMP",
    "MAX_SKEW_S",
    "RequestSignature",
    "parse_signature_headers",
    "sign_request",
    "signing_message",
    "verify_request",
]

HEADER_DEVICE = "Edgeloop-Device"
HEADER_TIMESTAMP = "Edgeloop-Timestamp"
HEADER_NONCE = "Edgeloop-Nonce"
HEADER_SIGNATURE = "Edgeloop-Signature"
ENROLL_DEVICE_ID = "enroll"
MAX_SKEW_S = 300
_PREFIX = "edgeloop-request-v1"
_NONCE = re.compile(r"[A-Za-z0-9_-]{16,64}")
_DEVICE = re.compile(r"[A-Za-z0-9_.-]{1,128}")


@dataclass(frozen=True)
class RequestSignature:
    """The four signature headers of one request, parsed but not yet verified."""

    device_id: str
    timestamp: int
    nonce: str
    signature: bytes


def signing_message(
    method: str, path: str, device_id: str, timestamp: int, nonce: str, body: bytes
) -> bytes:
    """The exact bytes a device signs for one request."""
    digest = hashlib.sha256(body).hexdigest()
    lines = (_PREFIX, method.upper(), path, device_id, str(timestamp), nonce, digest)
    return "\n".join(lines).encode("utf-8")


def sign_request(
    key: Ed25519PrivateKey,
    device_id: str,
    method: str,
    path: str,
    body: bytes = b"",
    *,
    timestamp: int | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    """The headers that authenticate one request; ``path`` includes any query string."""
    ts = int(time.time()) if timestamp is None else timestamp
    n = secrets.token_hex(16) if nonce is None else nonce
    sig = key.sign(signing_message(method, path, device_id, ts, n, body))
    return {
        HEADER_DEVICE: device_id,
        HEADER_TIMESTAMP: str(ts),
        HEADER_NONCE: n,
        HEADER_SIGNATURE: base64.b64encode(sig).decode("ascii"),
    }


def _header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name)
    if value is None:
        value = headers.get(name.lower())
    if value is None:
        raise AuthError(f"missing header {name}: every device request must be signed")
    return value


def parse_signature_headers(headers: Mapping[str, str]) -> RequestSignature:
    """Parse the signature headers (any capitalisation the mapping folds); raise AuthError."""
    device_id = _header(headers, HEADER_DEVICE)
    if not _DEVICE.fullmatch(device_id):
        raise AuthError(f"header {HEADER_DEVICE} {device_id[:40]!r} is not a device id")
    raw_ts = _header(headers, HEADER_TIMESTAMP)
    if not raw_ts.isdigit() or len(raw_ts) > 12:
        raise AuthError(f"header {HEADER_TIMESTAMP} {raw_ts[:20]!r}: expected Unix seconds")
    nonce = _header(headers, HEADER_NONCE)
    if not _NONCE.fullmatch(nonce):
        raise AuthError(
            f"header {HEADER_NONCE} {nonce[:70]!r}: expected 16 to 64 characters of [A-Za-z0-9_-]"
        )
    raw_sig = _header(headers, HEADER_SIGNATURE)
    try:
        sig = base64.b64decode(raw_sig, validate=True)
    except (binascii.Error, ValueError) as e:
        raise AuthError(f"header {HEADER_SIGNATURE} is not base64 ({e})") from e
    if len(sig) != 64:
        raise AuthError(f"header {HEADER_SIGNATURE}: {len(sig)} bytes, expected 64 (Ed25519)")
    return RequestSignature(device_id, int(raw_ts), nonce, sig)


def verify_request(
    parsed: RequestSignature,
    public_key: Ed25519PublicKey,
    method: str,
    path: str,
    body: bytes,
    *,
    now: float,
    max_skew_s: float = MAX_SKEW_S,
) -> None:
    """Check the signature and the timestamp; raise :class:`AuthError` naming what failed."""
    message = signing_message(method, path, parsed.device_id, parsed.timestamp, parsed.nonce, body)
    try:
        public_key.verify(parsed.signature, message)
    except InvalidSignature as e:
        raise AuthError(
            f"signature of {method.upper()} {path} by device {parsed.device_id!r} does not "
            "verify against its enrolled key"
        ) from e
    skew = parsed.timestamp - now
    if abs(skew) > max_skew_s:
        raise AuthError(
            f"request timestamp {parsed.timestamp} is {skew:+.0f} s from the server clock; "
            f"expected within {max_skew_s:.0f} s"
        )
