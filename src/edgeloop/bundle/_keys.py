"""Keys: Ed25519 for signing, X25519 for a fleet's (or a device's) encryption key pair.

Private keys are PEM (PKCS#8), written atomically with mode 0600 and optionally encrypted with
a passphrase (``BestAvailableEncryption``). Public keys are PEM (SubjectPublicKeyInfo), 0644.
A key's id is the hex sha256 of its raw 32 public bytes: short, stable, and the same wherever
the key is stored. Parsing functions take bytes (pure); the ``load_*``/``save_*`` pair are the
file edges.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from edgeloop._io import atomic_write_bytes, read_bytes
from edgeloop.errors import FileError, KeyError_

__all__ = [
    "DeviceKey",
    "PrivateKey",
    "PublicKey",
    "ed25519_from_dict",
    "ed25519_to_dict",
    "encryption_key_from_pem",
    "generate_encryption_key",
    "generate_signing_key",
    "key_id",
    "load_encryption_key",
    "load_public_key",
    "load_signing_key",
    "private_key_from_pem",
    "public_key_from_pem",
    "save_private_key",
    "save_public_key",
    "signing_key_from_pem",
]

PrivateKey = Ed25519PrivateKey | X25519PrivateKey
PublicKey = Ed25519PublicKey | X25519PublicKey


@runtime_checkable
class DeviceKey(Protocol):
    """What decryption needs of a device key: X25519 agreement and the public half.

    ``X25519PrivateKey`` is one; a wrapper around a TPM, TEE or secure element that performs
    the exchange inside the hardware is another, and the private key never leaves it.
    """

    def exchange(self, peer_public_key: X25519PublicKey) -> bytes: ...

    def public_key(self) -> X25519PublicKey: ...


PRIVATE_MODE = 0o600
PUBLIC_MODE = 0o644


def generate_signing_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def generate_encryption_key() -> X25519PrivateKey:
    return X25519PrivateKey.generate()


def _raw(public_key: PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(key: PublicKey | PrivateKey | DeviceKey) -> str:
    """Hex sha256 of the raw public key bytes."""
    public = key if isinstance(key, Ed25519PublicKey | X25519PublicKey) else key.public_key()
    return hashlib.sha256(_raw(public)).hexdigest()


def ed25519_to_dict(public_key: Ed25519PublicKey) -> dict[str, Any]:
    """The key as TUF writes keys (keytype, scheme, hex public value)."""
    return {"keytype": "ed25519", "scheme": "ed25519", "keyval": {"public": _raw(public_key).hex()}}


def ed25519_from_dict(data: Any, where: str = "key") -> Ed25519PublicKey:
    try:
        if data["keytype"] != "ed25519" or data["scheme"] != "ed25519":
            raise KeyError_(
                f"{where}: expected an ed25519 key, got keytype {data['keytype']!r} "
                f"scheme {data['scheme']!r}"
            )
        return Ed25519PublicKey.from_public_bytes(bytes.fromhex(data["keyval"]["public"]))
    except KeyError_:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise KeyError_(f"{where}: not a valid ed25519 public key ({e!r})") from e


# --- PEM parsing (pure) ----------------------------------------------------------------------


def private_key_from_pem(
    data: bytes, passphrase: bytes | None = None, where: str = "private key"
) -> PrivateKey:
    try:
        key = serialization.load_pem_private_key(data, password=passphrase)
    except TypeError as e:
        # cryptography raises TypeError for "password needed" and "password given but unused"
        need = (
            "needs a passphrase" if passphrase is None else "is not encrypted; drop the passphrase"
        )
        raise KeyError_(f"{where} {need}") from e
    except (ValueError, UnsupportedAlgorithm) as e:
        hint = "wrong passphrase or " if passphrase is not None else ""
        raise KeyError_(f"{where}: {hint}not a PEM private key ({e})") from e
    if not isinstance(key, Ed25519PrivateKey | X25519PrivateKey):
        raise KeyError_(f"{where}: expected an Ed25519 or X25519 key, got {type(key).__name__}")
    return key


def signing_key_from_pem(
    data: bytes, passphrase: bytes | None = None, where: str = "signing key"
) -> Ed25519PrivateKey:
    key = private_key_from_pem(data, passphrase, where)
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyError_(f"{where}: expected an Ed25519 signing key, got an X25519 encryption key")
    return key


def encryption_key_from_pem(
    data: bytes, passphrase: bytes | None = None, where: str = "device key"
) -> X25519PrivateKey:
    key = private_key_from_pem(data, passphrase, where)
    if not isinstance(key, X25519PrivateKey):
        raise KeyError_(f"{where}: expected an X25519 encryption key, got an Ed25519 signing key")
    return key


def public_key_from_pem(data: bytes, where: str = "public key") -> PublicKey:
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as e:
        raise KeyError_(f"{where}: not a PEM public key ({e})") from e
    if not isinstance(key, Ed25519PublicKey | X25519PublicKey):
        raise KeyError_(f"{where}: expected an Ed25519 or X25519 key, got {type(key).__name__}")
    return key


# --- files (the edges) -----------------------------------------------------------------------


def save_private_key(path: str | Path, key: PrivateKey, passphrase: bytes | None = None) -> Path:
    """Write ``key`` as PKCS#8 PEM with mode 0600, encrypted when a passphrase is given."""
    enc: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc)
    atomic_write_bytes(path, pem, mode=PRIVATE_MODE)
    return Path(path)


def save_public_key(path: str | Path, key: PublicKey | PrivateKey) -> Path:
    public = key.public_key() if isinstance(key, Ed25519PrivateKey | X25519PrivateKey) else key
    pem = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    atomic_write_bytes(path, pem, mode=PUBLIC_MODE)
    return Path(path)


def _read_key_file(path: str | Path, what: str) -> bytes:
    try:
        return read_bytes(path, what)
    except FileError as e:
        raise KeyError_(str(e)) from e


def load_signing_key(path: str | Path, passphrase: bytes | None = None) -> Ed25519PrivateKey:
    return signing_key_from_pem(
        _read_key_file(path, "signing key"), passphrase, f"signing key {str(path)!r}"
    )


def load_encryption_key(path: str | Path, passphrase: bytes | None = None) -> X25519PrivateKey:
    return encryption_key_from_pem(
        _read_key_file(path, "device key"), passphrase, f"device key {str(path)!r}"
    )


def load_public_key(path: str | Path) -> PublicKey:
    """A public key file, or the public half of an unencrypted private key file."""
    data = _read_key_file(path, "public key")
    where = f"key file {str(path)!r}"
    if b"PRIVATE KEY" in data:
        return private_key_from_pem(data, None, where).public_key()
    return public_key_from_pem(data, where)
