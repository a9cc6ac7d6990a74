"""The ``.elb`` container and its DSSE signature envelope.

A bundle is one file; all integers are big-endian::

    offset  size  field
    0       8     magic  b"\\x89ELB\\r\\n\\x1a\\n"  (PNG-style: catches text-mode mangling)
    8       2     format version (1)
    10      2     section count (3)
    12      ...   sections, each: tag (4 ASCII bytes) | length (u64) | body

    MNFT  the manifest: canonical JSON (sorted keys, no spaces), the signed DSSE payload
    SIGS  the DSSE envelope minus its payload, JSON:
          {"payloadType": "application/vnd.edgeloop.manifest+json",
           "signatures": [{"keyid": <hex sha256 of the raw Ed25519 key>, "sig": <base64>}]}
    DATA  the model encrypted with AES-256-GCM in chunks (see ``_crypto``)

The sections appear once each, in that order, and nothing follows the last one. Putting the
payload in its own section (instead of base64 inside the envelope) lets the signature be checked
over the exact manifest bytes before any JSON is parsed; a standard DSSE envelope is
``{"payload": base64(MNFT), **SIGS}``.

Why DSSE with Ed25519 and not OpenSSF ``model-signing``: model-signing 1.1.1 requires sigstore
(>=4), in-toto-attestation, sigstore-models, blake3, asn1crypto and click; sigstore 4.5 in turn
requires pydantic, pyjwt, requests, rfc3161-client, rfc8785, id and sigstore-rekor-types (checked
with ``pip download``). That is a large stack for a device whose core install is numpy +
onnxruntime + cryptography, and its default flow is keyless Sigstore signing, which needs network
access to Fulcio/Rekor that fleet devices do not have. DSSE is the envelope model-signing itself
uses, so the signed manifest could later be wrapped as an in-toto statement for third-party tools.
"""

from __future__ import annotations

import base64
import binascii
import json
import mmap
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from edgeloop.bundle._keys import key_id
from edgeloop.errors import BundleFormatError, SignatureError

__all__ = [
    "MAGIC",
    "MANIFEST_TYPE",
    "Container",
    "build_container",
    "canonical_json",
    "pae",
    "parse_container",
    "sign_envelope",
    "verify_envelope",
]

MAGIC = b"\x89ELB\r\n\x1a\n"
FORMAT_VERSION = 1
SECTIONS = (b"MNFT", b"SIGS", b"DATA")
MANIFEST_TYPE = "application/vnd.edgeloop.manifest+json"
MAX_MANIFEST = 64 << 20  # self-test tensors live in the manifest
MAX_SIGS = 1 << 20
_HEAD = struct.Struct(">8sHH")
_SECTION = struct.Struct(">4sQ")


@dataclass(frozen=True)
class Container:
    """The three sections of a parsed bundle; ``payload`` is a view, not a copy."""

    manifest: bytes
    signatures: bytes
    payload: memoryview
    payload_offset: int


def canonical_json(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def build_container(manifest: bytes, signatures: bytes, payload: bytes | memoryview) -> bytes:
    parts = [_HEAD.pack(MAGIC, FORMAT_VERSION, len(SECTIONS))]
    for tag, body in zip(SECTIONS, (manifest, signatures, payload), strict=True):
        parts.append(_SECTION.pack(tag, len(body)))
        parts.append(bytes(body))
    return b"".join(parts)


def parse_container(data: bytes | bytearray | memoryview | mmap.mmap) -> Container:
    """Split a bundle into its sections; any deviation is a :class:`BundleFormatError`."""
    view = memoryview(data).cast("B")
    total = len(view)
    if total < _HEAD.size:
        raise BundleFormatError(f"not a bundle: {total} bytes, shorter than the 12-byte header")
    magic, version, count = _HEAD.unpack_from(view, 0)
    if magic != MAGIC:
        raise BundleFormatError(f"not a bundle: magic {bytes(magic)!r}, expected {MAGIC!r}")
    if version != FORMAT_VERSION:
        raise BundleFormatError(f"bundle format version {version}, expected {FORMAT_VERSION}")
    if count != len(SECTIONS):
        raise BundleFormatError(f"bundle has {count} sections, expected {len(SECTIONS)}")
    pos = _HEAD.size
    bodies: list[memoryview] = []
    offsets: list[int] = []
    limits = (MAX_MANIFEST, MAX_SIGS, None)
    for want, limit in zip(SECTIONS, limits, strict=True):
        if total - pos < _SECTION.size:
            raise BundleFormatError(
                f"truncated bundle: section {want.decode()} header missing at offset {pos}"
            )
        tag, length = _SECTION.unpack_from(view, pos)
        pos += _SECTION.size
        if tag != want:
            raise BundleFormatError(f"section {tag!r} at offset {pos - 12}, expected {want!r}")
        if limit is not None and length > limit:
            raise BundleFormatError(
                f"section {want.decode()} declares {length} bytes, more than the {limit} allowed"
            )
        if length > total - pos:
            raise BundleFormatError(
                f"truncated bundle: section {want.decode()} declares {length} bytes, "
                f"only {total - pos} remain"
            )
        bodies.append(view[pos : pos + length])
        offsets.append(pos)
        pos += length
    if pos != total:
        raise BundleFormatError(f"{total - pos} unexpected bytes after the last section")
    return Container(bytes(bodies[0]), bytes(bodies[1]), bodies[2], offsets[2])


# --- DSSE ------------------------------------------------------------------------------------


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE pre-authentication encoding: what is actually signed."""
    t = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


def sign_envelope(
    payload: bytes, keys: Sequence[Ed25519PrivateKey], payload_type: str = MANIFEST_TYPE
) -> bytes:
    message = pae(payload_type, payload)
    sigs = [{"keyid": key_id(k), "sig": base64.b64encode(k.sign(message)).decode()} for k in keys]
    return canonical_json({"payloadType": payload_type, "signatures": sigs})


def _parse_signatures(signatures: bytes, payload_type: str) -> list[tuple[str, bytes]]:
    try:
        env = json.loads(signatures)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:  # Recursion: too deep
        raise BundleFormatError(f"signature section is not JSON ({e})") from e
    if not isinstance(env, dict) or not isinstance(env.get("signatures"), list):
        raise BundleFormatError("signature section: expected an object with a 'signatures' list")
    if env.get("payloadType") != payload_type:
        raise SignatureError(
            f"envelope payloadType {env.get('payloadType')!r}, expected {payload_type!r}"
        )
    out: list[tuple[str, bytes]] = []
    for i, s in enumerate(env["signatures"]):
        if not (isinstance(s, dict) and isinstance(s.get("keyid"), str)):
            raise BundleFormatError(f"signature {i}: expected an object with a string 'keyid'")
        if not isinstance(s.get("sig"), str):
            raise BundleFormatError(f"signature {i}: expected a base64 string 'sig'")
        try:
            out.append((s["keyid"], base64.b64decode(s["sig"], validate=True)))
        except (binascii.Error, ValueError) as e:
            raise BundleFormatError(f"signature {i}: 'sig' is not base64 ({e})") from e
    if not out:
        raise SignatureError("the envelope carries no signatures")
    return out


def verify_envelope(
    payload: bytes,
    signatures: bytes,
    trusted: dict[str, Ed25519PublicKey],
    threshold: int,
    payload_type: str = MANIFEST_TYPE,
    what: str = "manifest",
) -> list[str]:
    """Check that ``threshold`` distinct trusted keys signed ``payload``; return their ids."""
    message = pae(payload_type, payload)
    good: list[str] = []
    bad: list[str] = []
    unknown: list[str] = []
    for kid, sig in _parse_signatures(signatures, payload_type):
        key = trusted.get(kid)
        if key is None:
            unknown.append(kid)
            continue
        try:
            key.verify(sig, message)
        except InvalidSignature:
            bad.append(kid)
            continue
        if kid not in good:
            good.append(kid)
    if len(good) >= threshold:
        return good
    if bad:
        raise SignatureError(
            f"signature by trusted key {bad[0][:16]} does not match the {what} "
            f"(the {what} or its signature was altered)"
        )
    if unknown:
        raise SignatureError(
            f"{what} signed by untrusted key {', '.join(k[:16] for k in unknown)}; "
            f"trusted: {', '.join(k[:16] for k in trusted) or 'none'}"
        )
    raise SignatureError(f"{what} has {len(good)} valid signature(s), threshold is {threshold}")
