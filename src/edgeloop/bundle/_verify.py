"""``verify`` and ``decrypt``: pure functions, bundle bytes and keys in, values or errors out.

Order of checks in :func:`verify`: container shape -> signature over the exact manifest bytes
(before any JSON is parsed) -> manifest fields -> payload length and sha256 -> version against
the installed one. Nothing here reads a file or the network.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import re
from datetime import datetime
from typing import Any

from edgeloop.artifacts import Manifest
from edgeloop.bundle._crypto import decrypt_payload
from edgeloop.bundle._format import parse_container, verify_envelope
from edgeloop.bundle._keys import DeviceKey
from edgeloop.bundle._rollback import check_rollback
from edgeloop.bundle._trust import Trust
from edgeloop.errors import BundleFormatError, EdgeloopError, IntegrityError

__all__ = [
    "check_payload",
    "decrypt",
    "parse_manifest",
    "payload_sha256",
    "verify",
    "verify_signed",
]

_HEX64 = re.compile(r"[0-9a-f]{64}")
Buffer = bytes | bytearray | memoryview | mmap.mmap


def _part(parts: Any, name: str) -> tuple[str, int]:
    entry = parts.get(name) if isinstance(parts, dict) else None
    if not isinstance(entry, dict):
        raise BundleFormatError(f"manifest parts.{name}: missing")
    digest, length = entry.get("sha256"), entry.get("length")
    if not isinstance(digest, str) or not _HEX64.fullmatch(digest):
        raise BundleFormatError(f"manifest parts.{name}.sha256 {digest!r}: expected 64 hex digits")
    if not isinstance(length, int) or isinstance(length, bool) or length < 0:
        raise BundleFormatError(f"manifest parts.{name}.length {length!r}: expected an int >= 0")
    return digest, length


def parse_manifest(data: bytes) -> Manifest:
    """Manifest JSON -> :class:`Manifest`, checking the fields a device relies on."""
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise BundleFormatError(f"manifest is not JSON ({e})") from e
    if not isinstance(obj, dict):
        raise BundleFormatError(f"manifest: expected a JSON object, got {type(obj).__name__}")
    try:
        m = Manifest.from_dict(obj)
    except EdgeloopError as e:
        raise BundleFormatError(f"manifest: {e}") from e
    except Exception as e:  # from_dict on hostile shapes (a number where a list belongs)
        raise BundleFormatError(f"manifest has a malformed field ({e!r})") from e
    if not isinstance(m.name, str) or not m.name:
        raise BundleFormatError(f"manifest name {m.name!r}: expected a non-empty string")
    if not isinstance(m.version, int) or isinstance(m.version, bool) or m.version < 0:
        raise BundleFormatError(f"manifest version {m.version!r}: expected an int >= 0")
    _part(m.parts, "model")
    _part(m.parts, "payload")
    for fld in ("encryption", "selftest", "requirements"):
        if not isinstance(getattr(m, fld), dict):
            raise BundleFormatError(f"manifest {fld}: expected an object")
    return m


def verify(
    bundle: Buffer,
    trust: Trust,
    *,
    installed_version: int | None = None,
    rollback: bytes | None = None,
    now: datetime | None = None,
) -> Manifest:
    """Return the verified manifest of ``bundle`` or raise a specific :class:`SecurityError`.

    ``installed_version``: refuse older versions (:class:`RollbackError`) unless ``rollback``
    is a signed statement allowing exactly this step (see ``sign_rollback``).
    """
    m, payload = verify_signed(bundle, trust, installed_version, rollback, now)
    check_payload(m, payload_sha256(payload))
    return m


def verify_signed(
    bundle: Buffer,
    trust: Trust,
    installed_version: int | None = None,
    rollback: bytes | None = None,
    now: datetime | None = None,
) -> tuple[Manifest, memoryview]:
    """Every check of :func:`verify` but the payload hash; return the manifest and payload.

    Loading uses this to hash the payload while it decrypts (see ``_load``); the plaintext is
    not used until :func:`check_payload` passed.
    """
    c = parse_container(bundle)
    verify_envelope(c.manifest, c.signatures, dict(trust.release_keys), trust.threshold)
    m = parse_manifest(c.manifest)
    _, length = _part(m.parts, "payload")
    if len(c.payload) != length:
        raise IntegrityError(
            f"encrypted payload of {m.name!r} v{m.version} is {len(c.payload)} bytes, "
            f"the signed manifest says {length}"
        )
    check_rollback(m.name, m.version, installed_version, rollback, trust, now)
    return m, c.payload


def payload_sha256(payload: memoryview, step: int = 32 << 20) -> str:
    h = hashlib.sha256()
    for off in range(0, len(payload), step):
        h.update(payload[off : off + step])  # hashlib drops the GIL on large updates
    return h.hexdigest()


def check_payload(m: Manifest, digest: str) -> None:
    want, _ = _part(m.parts, "payload")
    if digest != want:
        raise IntegrityError(
            f"encrypted payload of {m.name!r} v{m.version} has sha256 {digest[:16]}, "
            f"the signed manifest says {want[:16]}"
        )


def decrypt(
    bundle: Buffer,
    manifest: Manifest,
    device_key: DeviceKey,
    recipient: dict[str, Any] | None = None,
) -> bytes:
    """The model bytes of a bundle already checked by :func:`verify`, in memory.

    ``recipient``: a recipients entry from elsewhere (the fleet server re-wraps the data key
    per device) used instead of the manifest's list; a wrong key fails chunk authentication.

    The signed payload hash (checked by :func:`verify`) fixes the ciphertext, and AES-GCM fixes
    the plaintext for that ciphertext, so the plaintext is not hashed again (that would add a
    full SHA-256 pass over the model to every load); its length is fixed by the chunk layout.
    """
    c = parse_container(bundle)
    _, plain_len = _part(manifest.parts, "model")
    enc = manifest.encryption
    if recipient is not None:
        enc = {**enc, "recipients": [recipient]}
    payload = c.payload
    del c
    try:
        return decrypt_payload(payload, enc, device_key, plain_len)
    finally:
        payload.release()
