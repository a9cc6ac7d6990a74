"""Public keys as the protocol carries them: hex of the raw 32 bytes (pure parsing)."""

from __future__ import annotations

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from edgeloop.errors import KeyError_

__all__ = ["ed25519_from_hex", "public_hex", "x25519_from_hex"]

_Key = Ed25519PublicKey | Ed25519PrivateKey | X25519PublicKey | X25519PrivateKey


def public_hex(key: _Key) -> str:
    """Hex of the raw public key bytes (of the public half when given a private key)."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey | X25519PrivateKey) else key
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()


def _raw(text: str, where: str) -> bytes:
    try:
        raw = bytes.fromhex(text)
    except (ValueError, TypeError) as e:
        raise KeyError_(f"{where} {text!r:.80}: expected hex of a raw 32-byte key") from e
    if len(raw) != 32:
        raise KeyError_(f"{where}: {len(raw)} bytes, expected 32")
    return raw


def ed25519_from_hex(text: str, where: str = "signing_key") -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(_raw(text, where))


def x25519_from_hex(text: str, where: str = "encryption_key") -> X25519PublicKey:
    return X25519PublicKey.from_public_bytes(_raw(text, where))
