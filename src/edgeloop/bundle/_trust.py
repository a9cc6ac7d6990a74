"""Trust: the release keys a device accepts bundle manifests from.

Release keys travel inside the TUF root metadata, in the signed field ``x-edgeloop-release``
(``{"threshold": k, "keys": {keyid: {"keytype": "ed25519", ...}}}``), so a device needs one file,
``root.json``, to trust both the update channel and the bundles; rotating the release key is a
root rotation that devices follow through TUF. A bare Ed25519 public key PEM is accepted too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edgeloop._io import read_bytes
from edgeloop.bundle._keys import ed25519_from_dict, key_id, load_public_key
from edgeloop.errors import BundleFormatError, FileError, KeyError_, SignatureError

__all__ = ["DIRECTOR_FIELD", "RELEASE_FIELD", "Trust", "load_trust"]

RELEASE_FIELD = "x-edgeloop-release"
DIRECTOR_FIELD = "x-edgeloop-director"


@dataclass(frozen=True)
class Trust:
    """Trusted release keys by key id, and how many of them must sign a manifest."""

    release_keys: Mapping[str, Ed25519PublicKey] = field(default_factory=dict)
    threshold: int = 1
    root_version: int | None = None
    director_keys: Mapping[str, Ed25519PublicKey] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.threshold < 1:
            raise KeyError_(f"trust threshold must be >= 1, got {self.threshold}")
        if len(self.release_keys) < self.threshold:
            raise KeyError_(
                f"trust has {len(self.release_keys)} release key(s), fewer than its threshold "
                f"{self.threshold}"
            )

    @classmethod
    def from_keys(cls, keys: Iterable[Ed25519PublicKey], threshold: int = 1) -> Trust:
        return cls({key_id(k): k for k in keys}, threshold)

    @classmethod
    def from_root_bytes(cls, data: bytes) -> Trust:
        """Trust from TUF root metadata; the root must carry its own threshold of signatures."""
        from tuf.api.exceptions import UnsignedMetadataError
        from tuf.api.metadata import Metadata

        try:
            md = Metadata.from_bytes(data)
        except Exception as e:  # tuf raises DeserializationError wrapping anything
            raise BundleFormatError(f"trust root is not TUF root metadata ({e})") from e
        if md.signed.type != "root":
            raise BundleFormatError(f"trust root: expected a root role, got {md.signed.type!r}")
        try:
            md.verify_delegate("root", md)
        except UnsignedMetadataError as e:
            raise SignatureError(f"trust root version {md.signed.version}: {e}") from e
        fields = md.signed.unrecognized_fields
        keys, threshold = _key_field(fields.get(RELEASE_FIELD), RELEASE_FIELD, md.signed.version)
        director: dict[str, Ed25519PublicKey] = {}
        if fields.get(DIRECTOR_FIELD) is not None:  # roots made before issue 13 lack it
            director, _ = _key_field(fields[DIRECTOR_FIELD], DIRECTOR_FIELD, md.signed.version)
        return cls(keys, threshold, root_version=md.signed.version, director_keys=director)


def _key_field(value: Any, name: str, version: int) -> tuple[dict[str, Ed25519PublicKey], int]:
    """``{"threshold": k, "keys": {keyid: key}}`` from a root field, every key id checked."""
    where = f"root.json version {version} field {name!r}"
    if not isinstance(value, dict) or not isinstance(value.get("keys"), dict):
        raise KeyError_(f"{where}: missing or not an object with 'keys'")
    keys: dict[str, Ed25519PublicKey] = {}
    for kid, kd in value["keys"].items():
        key = ed25519_from_dict(kd, f"{where} key {str(kid)[:16]}")
        if key_id(key) != kid:
            raise KeyError_(f"{where}: key id {str(kid)[:16]} does not match its key")
        keys[kid] = key
    threshold = value.get("threshold", 1)
    if not isinstance(threshold, int) or isinstance(threshold, bool):
        raise KeyError_(f"{where}: threshold {threshold!r} is not an integer")
    return keys, threshold


def load_trust(path: str | Path) -> Trust:
    """Trust from ``root.json``, a directory holding one (a keys dir), or an Ed25519 PEM key."""
    p = Path(path)
    if p.is_dir():
        p = p / "root.json"
    try:
        data = read_bytes(p, "trust root")
    except FileError as e:
        raise KeyError_(str(e)) from e
    if data.lstrip().startswith(b"{"):
        return Trust.from_root_bytes(data)
    key = load_public_key(p)
    if not isinstance(key, Ed25519PublicKey):
        raise KeyError_(f"trust key {str(p)!r} is an X25519 encryption key, expected Ed25519")
    return Trust.from_keys([key])
