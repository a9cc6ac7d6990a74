"""Payload encryption: AES-256-GCM in chunks under a fresh data key, wrapped per recipient.

Chunk ``i`` of ``n`` is ``AES-256-GCM(data_key, nonce_i, plaintext_i, aad_i)`` where
``nonce_i = prefix (4 random bytes) || u64(i)`` and
``aad_i = b"edgeloop-chunk-v1" || nonce_i || u64(i) || u8(i == n - 1)``: a chunk moved to another
position fails its tag, and the final-chunk flag makes a stream cut at a chunk boundary fail too.
Every chunk but the last holds ``chunk_size`` plaintext bytes; each ciphertext chunk is 16 bytes
(the tag) longer than its plaintext.

The data key is wrapped for each recipient's X25519 public key: a fresh ephemeral X25519 key,
``kek = HKDF-SHA256(shared secret, salt = ephemeral pub || recipient pub,
info = b"edgeloop bundle data key v1")``, then ``AES-256-GCM(kek, nonce, data_key, aad =
recipient key id)``. The recipients list lives in the signed manifest, so it cannot be edited.
"""

from __future__ import annotations

import base64
import binascii
import os
import struct
from collections.abc import Sequence
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from edgeloop.bundle._buffers import writable_bytes
from edgeloop.bundle._keys import DeviceKey, key_id
from edgeloop.errors import BundleFormatError, DecryptionError

__all__ = [
    "ALGORITHM",
    "DEFAULT_CHUNK",
    "decrypt_chunks",
    "decrypt_payload",
    "encrypt_chunks",
    "encrypt_payload",
    "unwrap_data_key",
    "wrap_data_key",
]

ALGORITHM = "AES-256-GCM-chunked-v1"
DEFAULT_CHUNK = 1 << 20
TAG = 16
_INFO = b"edgeloop bundle data key v1"
_AAD = b"edgeloop-chunk-v1"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(value: Any, field: str, size: int | None = None) -> bytes:
    if not isinstance(value, str):
        raise BundleFormatError(f"manifest encryption.{field}: expected base64 text, got {value!r}")
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as e:
        raise BundleFormatError(f"manifest encryption.{field}: not base64 ({e})") from e
    if size is not None and len(raw) != size:
        raise BundleFormatError(f"manifest encryption.{field}: {len(raw)} bytes, expected {size}")
    return raw


def _raw_pub(key: X25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _kek(shared: bytes, eph_pub: bytes, rcpt_pub: bytes) -> bytes:
    return HKDF(hashes.SHA256(), 32, salt=eph_pub + rcpt_pub, info=_INFO).derive(shared)


def _nonce(prefix: bytes, index: int) -> bytes:
    return prefix + struct.pack(">Q", index)


def _aad(nonce: bytes, index: int, final: bool) -> bytes:
    return _AAD + nonce + struct.pack(">QB", index, 1 if final else 0)


def chunk_count(plain_len: int, chunk_size: int) -> int:
    return max(1, -(-plain_len // chunk_size))


def encrypt_payload(
    plaintext: bytes, recipients: Sequence[X25519PublicKey], chunk_size: int = DEFAULT_CHUNK
) -> tuple[dict[str, Any], bytes]:
    """Encrypt ``plaintext``; return the manifest's ``encryption`` block and the ciphertext."""
    if not recipients:
        raise DecryptionError("a bundle needs at least one recipient (--encrypt-to)")
    data_key = AESGCM.generate_key(256)
    prefix = os.urandom(4)
    ciphertext = encrypt_chunks(plaintext, data_key, prefix, chunk_size)
    wrapped = [wrap_data_key(data_key, rcpt) for rcpt in recipients]
    info = {
        "algorithm": ALGORITHM,
        "chunk_size": chunk_size,
        "nonce_prefix": _b64(prefix),
        "recipients": wrapped,
    }
    return info, ciphertext


def encrypt_chunks(
    plaintext: bytes | memoryview, data_key: bytes, prefix: bytes, chunk_size: int
) -> bytes:
    """The chunked ciphertext of ``plaintext`` under ``data_key`` and nonce ``prefix``.

    Deterministic for a given key and prefix: a delta (``_delta``) rebuilds a bundle's exact
    ciphertext from its plaintext this way. Never call it twice with one key and prefix on
    different plaintexts (GCM nonce reuse); only for re-creating an existing ciphertext.
    """
    aead = AESGCM(data_key)
    n = chunk_count(len(plaintext), chunk_size)
    view = memoryview(plaintext)
    out = []
    for i in range(n):
        nonce = _nonce(prefix, i)
        block = view[i * chunk_size : (i + 1) * chunk_size]
        out.append(aead.encrypt(nonce, bytes(block), _aad(nonce, i, i == n - 1)))
    return b"".join(out)


def wrap_data_key(data_key: bytes, recipient: X25519PublicKey) -> dict[str, str]:
    """One ``encryption.recipients`` entry: ``data_key`` wrapped for ``recipient``.

    The fleet server uses this to re-wrap a bundle's data key for an enrolled device.
    """
    eph = X25519PrivateKey.generate()
    eph_pub, rcpt_pub = _raw_pub(eph.public_key()), _raw_pub(recipient)
    kid = key_id(recipient)
    wrap_nonce = os.urandom(12)
    ct = AESGCM(_kek(eph.exchange(recipient), eph_pub, rcpt_pub)).encrypt(
        wrap_nonce, data_key, kid.encode()
    )
    return {"kid": kid, "epk": _b64(eph_pub), "nonce": _b64(wrap_nonce), "wrapped_key": _b64(ct)}


def unwrap_data_key(encryption: dict[str, Any], device_key: DeviceKey) -> bytes:
    """Find this device's entry among the recipients and unwrap the data key."""
    kid = key_id(device_key)
    recipients = encryption.get("recipients")
    if not isinstance(recipients, list):
        raise BundleFormatError("manifest encryption.recipients: expected a list")
    entry = next((r for r in recipients if isinstance(r, dict) and r.get("kid") == kid), None)
    if entry is None:
        listed = ", ".join(str(r.get("kid", "?"))[:16] for r in recipients if isinstance(r, dict))
        raise DecryptionError(
            f"bundle is not encrypted for device key {kid[:16]}; recipients: {listed or 'none'}"
        )
    eph_pub = _unb64(entry.get("epk"), "recipients.epk", 32)
    wrap_nonce = _unb64(entry.get("nonce"), "recipients.nonce", 12)
    wrapped = _unb64(entry.get("wrapped_key"), "recipients.wrapped_key", 32 + TAG)
    try:
        shared = device_key.exchange(X25519PublicKey.from_public_bytes(eph_pub))
        kek = _kek(shared, eph_pub, _raw_pub(device_key.public_key()))
        return AESGCM(kek).decrypt(wrap_nonce, wrapped, kid.encode())
    except (InvalidTag, ValueError) as e:
        raise DecryptionError(
            f"cannot unwrap the data key for device key {kid[:16]}: wrapped key was altered"
        ) from e


def decrypt_payload(
    payload: bytes | memoryview,
    encryption: dict[str, Any],
    device_key: DeviceKey,
    plain_len: int,
) -> bytes:
    """Decrypt the DATA section chunk by chunk, in place into one ``bytes`` of ``plain_len``."""
    if encryption.get("algorithm") != ALGORITHM:
        raise BundleFormatError(
            f"manifest encryption.algorithm {encryption.get('algorithm')!r}, expected {ALGORITHM!r}"
        )
    chunk_size = encryption.get("chunk_size")
    if not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or chunk_size < 1:
        raise BundleFormatError(f"manifest encryption.chunk_size {chunk_size!r}: expected int > 0")
    prefix = _unb64(encryption.get("nonce_prefix"), "nonce_prefix", 4)
    n = chunk_count(plain_len, chunk_size)
    expected = plain_len + n * TAG
    if len(payload) != expected:
        raise DecryptionError(
            f"encrypted payload is {len(payload)} bytes, expected {expected} for a "
            f"{plain_len}-byte model in {n} chunk(s)"
        )
    return decrypt_chunks(
        payload, unwrap_data_key(encryption, device_key), prefix, chunk_size, plain_len
    )


def decrypt_chunks(
    payload: bytes | memoryview, data_key: bytes, prefix: bytes, chunk_size: int, plain_len: int
) -> bytes:
    """Decrypt chunked ciphertext under ``data_key``, in place into one ``bytes``."""
    n = chunk_count(plain_len, chunk_size)
    if len(payload) != plain_len + n * TAG:
        raise DecryptionError(
            f"encrypted payload is {len(payload)} bytes, expected {plain_len + n * TAG} for "
            f"{plain_len} bytes in {n} chunk(s)"
        )
    aead = AESGCM(data_key)
    into = getattr(aead, "decrypt_into", None)  # cryptography >= 46; else one copy per chunk
    src = memoryview(payload)
    step = chunk_size + TAG
    with writable_bytes(plain_len) as (dst, result):
        for i in range(n):
            nonce = _nonce(prefix, i)
            block = src[i * step : (i + 1) * step]
            out = dst[i * chunk_size : i * chunk_size + len(block) - TAG]
            aad = _aad(nonce, i, i == n - 1)
            try:
                if into is not None:
                    into(nonce, block, aad, out)
                else:
                    out[:] = aead.decrypt(nonce, block, aad)
            except InvalidTag as e:
                raise DecryptionError(
                    f"chunk {i} of {n} fails authentication: the ciphertext was altered, "
                    "reordered or truncated"
                ) from e
            finally:
                out.release()
                block.release()
    src.release()
    return result.value
