"""A release keys directory: the TUF roles, the release key and the fleet encryption key.

::

    KEYS/
      root-1.pem ... root-N.pem   Ed25519, 0600: root role (threshold K of N)
      targets.pem snapshot.pem timestamp.pem
      release.pem release.pub.pem Ed25519: signs bundle manifests and rollback statements
                                  (only the .pub.pem when the release key lives elsewhere)
      fleet.pem   fleet.pub.pem   X25519: bundles are encrypted to fleet.pub.pem
      root.json                   the current signed TUF root: ship this to devices
      roots/<V>.root.json         every root version, so clients can walk the rotation chain
      retired/                    keys replaced by ``rotate`` (still 0600)

``root.json`` carries the release key(s) in its signed ``x-edgeloop-release`` field and the fleet
director's online key in ``x-edgeloop-director`` (:func:`name_director`), so one file anchors
trust in the update channel, the bundles and the assignments. Every new root is signed by the
old root keys and the new ones (TUF's rule), so devices follow rotations on their own.
Holding all root keys in one directory is the simple laptop setup; a production root keeps its
keys offline (HSMs, separate machines) and signs with ``tuf.api.metadata`` the same way.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from securesystemslib.signer import CryptoSigner, SSlibKey
from tuf.api.metadata import Metadata

from edgeloop._io import atomic_write_bytes
from edgeloop.bundle import (
    DIRECTOR_FIELD,
    RELEASE_FIELD,
    ed25519_to_dict,
    generate_encryption_key,
    generate_signing_key,
    key_id,
    load_public_key,
    load_signing_key,
    save_private_key,
    save_public_key,
)
from edgeloop.errors import FileError, InputError, KeyError_

__all__ = [
    "ONLINE_FILES",
    "ROLES",
    "ROTATABLE",
    "KeyRing",
    "export_online",
    "init_keys",
    "name_director",
    "rotate_key",
    "sync_roots",
]

# what a fleet server needs: freshness (snapshot, timestamp), the fleet key it re-wraps data keys
# with, and public files; never the root, targets or release private keys
ONLINE_FILES = ("snapshot.pem", "timestamp.pem", "fleet.pem", "fleet.pub.pem", "release.pub.pem")

ROLES = ("root", "targets", "snapshot", "timestamp")
ROTATABLE = (*ROLES, "release", "fleet")
ROOT_EXPIRY = timedelta(days=365)


def _utc(now: datetime | None) -> datetime:
    return (now or datetime.now(timezone.utc)).replace(microsecond=0)


def _signer(path: Path, passphrase: bytes | None) -> CryptoSigner:
    key = load_signing_key(path, passphrase)
    public = SSlibKey.from_crypto(key.public_key(), keyid=key_id(key.public_key()))
    return CryptoSigner(key, public)


def _key_files(d: Path, role: str) -> list[Path]:
    if role == "root":
        files = sorted(d.glob("root-*.pem"), key=lambda p: int(p.stem.split("-")[1]))
    else:
        files = [d / f"{role}.pem"]
    missing = [str(f) for f in files if not f.is_file()]
    if missing or not files:
        raise KeyError_(f"{role} key missing in {str(d)!r}: {missing or 'none found'}")
    return files


class KeyRing:
    """The keys directory, loaded lazily; private keys are read only when a role signs."""

    def __init__(self, directory: str | Path, passphrase: bytes | None = None) -> None:
        self.dir = Path(directory)
        self.passphrase = passphrase
        if not (self.dir / "root.json").is_file():
            raise KeyError_(
                f"keys directory {str(self.dir)!r} has no root.json; run `edgeloop keys init`"
            )

    def key_files(self, role: str) -> list[Path]:
        return _key_files(self.dir, role)

    def signers(self, role: str) -> list[CryptoSigner]:
        return [_signer(p, self.passphrase) for p in self.key_files(role)]

    def root_bytes(self) -> bytes:
        return (self.dir / "root.json").read_bytes()

    def root(self) -> Metadata[Any]:
        return Metadata.from_bytes(self.root_bytes())

    def root_history(self) -> list[Path]:
        return sorted(
            (self.dir / "roots").glob("*.root.json"), key=lambda p: int(p.name.split(".")[0])
        )

    def write_root(self, md: Metadata[Any]) -> None:
        _write_root(self.dir, md)


def _write_root(d: Path, md: Metadata[Any]) -> None:
    data = md.to_bytes()
    atomic_write_bytes(d / "roots" / f"{md.signed.version}.root.json", data, mode=0o644)
    atomic_write_bytes(d / "root.json", data, mode=0o644)  # public: ship it to devices


def _tuf_key(signer: CryptoSigner) -> SSlibKey:
    key = signer.public_key
    assert isinstance(key, SSlibKey)
    return key


def _release_field(d: Path) -> dict[str, Any]:
    """The root's release-key field, from ``release.pub.pem`` (the private key may be elsewhere)."""
    key = load_public_key(d / "release.pub.pem")
    if not isinstance(key, Ed25519PublicKey):
        raise KeyError_(f"{str(d / 'release.pub.pem')!r} is an X25519 key, expected Ed25519")
    return {"threshold": 1, "keys": {key_id(key): ed25519_to_dict(key)}}


def _director_field(key: Ed25519PublicKey) -> dict[str, Any]:
    return {"threshold": 1, "keys": {key_id(key): ed25519_to_dict(key)}}


def _sign_root(md: Metadata[Any], signers: list[CryptoSigner]) -> None:
    md.signatures.clear()
    seen: set[str] = set()
    for s in signers:
        if s.public_key.keyid not in seen:
            md.sign(s, append=True)
            seen.add(s.public_key.keyid)


def init_keys(
    directory: str | Path,
    *,
    threshold: int = 1,
    root_keys: int = 1,
    passphrase: bytes | None = None,
    expires: timedelta = ROOT_EXPIRY,
    now: datetime | None = None,
    release_public_key: str | Path | None = None,
    exist_ok: bool = False,
    director_public_key: Ed25519PublicKey | None = None,
) -> KeyRing:
    """Create every key and the signed root v1 in ``directory`` (never overwrites a key).

    ``release_public_key``: trust this existing release key (a PEM file) instead of making one,
    so a fleet server can hold the repository keys while the release key stays with CI.
    A directory that already holds keys is refused, unless ``exist_ok`` and its keys are the
    set asked for (same root K-of-N, same release key when one is given): then they are kept
    as they are, so running the same ``keys init`` twice is harmless.
    ``director_public_key``: name the fleet director's key in the root (:func:`name_director`).
    """
    from tuf.api.metadata import Root

    d = Path(directory)
    if not 1 <= threshold <= root_keys:
        raise InputError(
            f"root threshold must be between 1 and --root-keys {root_keys}, got {threshold}"
        )
    if (d / "root.json").exists():
        if not exist_ok:
            raise InputError(
                f"{str(d)!r} already holds keys (root.json); use `edgeloop keys rotate`"
            )
        _check_same_set(d, threshold, root_keys, release_public_key)
        return KeyRing(d, passphrase)
    try:
        d.mkdir(mode=0o700, parents=True, exist_ok=True)  # private keys: owner only
    except OSError as e:
        raise FileError(f"cannot create keys directory {str(d)!r}: {e.strerror or e}") from e
    external = load_public_key(release_public_key) if release_public_key else None
    if external is not None and not isinstance(external, Ed25519PublicKey):
        raise KeyError_(f"release key {str(release_public_key)!r} is X25519, expected Ed25519")
    for i in range(1, root_keys + 1):
        save_private_key(d / f"root-{i}.pem", generate_signing_key(), passphrase)
    for role in ("targets", "snapshot", "timestamp"):
        save_private_key(d / f"{role}.pem", generate_signing_key(), passphrase)
    if external is None:
        release = generate_signing_key()
        save_private_key(d / "release.pem", release, passphrase)
        save_public_key(d / "release.pub.pem", release)
    else:
        save_public_key(d / "release.pub.pem", external)
    fleet = generate_encryption_key()
    save_private_key(d / "fleet.pem", fleet, passphrase)
    save_public_key(d / "fleet.pub.pem", fleet)

    root = Root(expires=_utc(now) + expires, consistent_snapshot=True)
    root.roles["root"].threshold = threshold
    signers: dict[str, list[CryptoSigner]] = {}
    for role in ROLES:
        signers[role] = [_signer(p, passphrase) for p in _key_files(d, role)]
        for s in signers[role]:
            root.add_key(_tuf_key(s), role)
    root.unrecognized_fields[RELEASE_FIELD] = _release_field(d)
    if director_public_key is not None:
        root.unrecognized_fields[DIRECTOR_FIELD] = _director_field(director_public_key)
    md = Metadata(root)
    _sign_root(md, signers["root"])
    _write_root(d, md)
    return KeyRing(d, passphrase)


def _check_same_set(
    d: Path, threshold: int, root_keys: int, release_public_key: str | Path | None
) -> None:
    """Refuse an existing key set that differs from the one asked for (nothing is changed)."""
    role = KeyRing(d).root().signed.roles["root"]
    have = (role.threshold, len(role.keyids))
    if have != (threshold, root_keys):
        raise InputError(
            f"{str(d)!r} already holds keys with a {have[0]}-of-{have[1]} root, not the "
            f"{threshold}-of-{root_keys} asked for; use `edgeloop keys rotate` or another --dir"
        )
    if release_public_key is not None:
        wanted = key_id(load_public_key(release_public_key))
        if wanted != key_id(load_public_key(d / "release.pub.pem")):
            raise InputError(
                f"{str(d)!r} already holds keys that trust another release key than "
                f"{str(release_public_key)!r}; use `edgeloop keys rotate release`"
            )


def rotate_key(
    directory: str | Path,
    role: str,
    *,
    passphrase: bytes | None = None,
    expires: timedelta = ROOT_EXPIRY,
    now: datetime | None = None,
    release_public_key: str | Path | None = None,
) -> int | None:
    """Replace ``role``'s key(s); return the new root version (None for the fleet key).

    ``release_public_key`` (role ``release`` only): trust this existing key instead of making one.
    """
    if role not in ROTATABLE:
        raise InputError(f"unknown role {role!r}; expected one of {', '.join(ROTATABLE)}")
    if release_public_key is not None and role != "release":
        raise InputError(f"a release public key was given for role {role!r}; it is for 'release'")
    ring = KeyRing(directory, passphrase)
    retired = ring.dir / "retired"
    stamp = time.strftime("%Y%m%dT%H%M%S")
    if role == "release":
        old_files = [
            f for f in (ring.dir / "release.pem", ring.dir / "release.pub.pem") if f.is_file()
        ]
        if release_public_key is None and not (ring.dir / "release.pem").is_file():
            raise KeyError_(
                f"{str(ring.dir)!r} holds no release.pem (the release key lives elsewhere); "
                "give the new release public key"
            )
    else:
        old_files = ring.key_files(role) if role != "fleet" else [ring.dir / "fleet.pem"]
    old_root_signers = ring.signers("root")
    md = ring.root()
    for f in old_files:
        atomic_write_bytes(
            retired / f"{f.name.removesuffix('.pem')}-{stamp}.pem", f.read_bytes(), mode=0o600
        )
    if role == "release" and release_public_key is not None:
        (ring.dir / "release.pem").unlink(missing_ok=True)
        external = load_public_key(release_public_key)
        if not isinstance(external, Ed25519PublicKey):
            raise KeyError_(f"release key {str(release_public_key)!r} is X25519, expected Ed25519")
        save_public_key(ring.dir / "release.pub.pem", external)
    else:
        for f in old_files:
            if f.name.endswith(".pub.pem"):
                continue
            new_key = generate_encryption_key() if role == "fleet" else generate_signing_key()
            save_private_key(f, new_key, passphrase)
            if role in ("fleet", "release"):
                save_public_key(ring.dir / f"{role}.pub.pem", new_key)
    if role == "fleet":
        return None
    if role == "release":
        md.signed.unrecognized_fields[RELEASE_FIELD] = _release_field(ring.dir)
    else:
        for kid in list(md.signed.roles[role].keyids):
            md.signed.revoke_key(kid, role)
        for s in ring.signers(role):
            md.signed.add_key(_tuf_key(s), role)
    md.signed.version += 1
    md.signed.expires = _utc(now) + expires
    _sign_root(md, old_root_signers + ring.signers("root"))
    ring.write_root(md)
    return int(md.signed.version)


def name_director(
    directory: str | Path,
    director_public_key: Ed25519PublicKey,
    *,
    passphrase: bytes | None = None,
    expires: timedelta = ROOT_EXPIRY,
    now: datetime | None = None,
) -> int | None:
    """Name ``director_public_key`` as the only key that may sign assignments; new root version.

    A root rotation (signed by the root keys), so devices follow it through TUF: this is how a
    director key replaced after a server compromise reaches devices without reflashing them.
    Returns None when the root already names exactly this key.
    """
    ring = KeyRing(directory, passphrase)
    md = ring.root()
    field = _director_field(director_public_key)
    if md.signed.unrecognized_fields.get(DIRECTOR_FIELD) == field:
        return None
    signers = ring.signers("root")
    md.signed.unrecognized_fields[DIRECTOR_FIELD] = field
    md.signed.version += 1
    md.signed.expires = _utc(now) + expires
    _sign_root(md, signers)
    ring.write_root(md)
    return int(md.signed.version)


def export_online(directory: str | Path, dest: str | Path) -> list[Path]:
    """Copy the online part of a keys directory to a fleet server's ``dest`` (the Uptane split).

    ``dest`` gets :data:`ONLINE_FILES`, retired fleet keys (to re-wrap older bundles), ``root.json``
    and every root version; the root, targets and release private keys stay in ``directory``.
    Refuses a ``dest`` that already holds a root.
    """
    ring = KeyRing(directory)
    out = Path(dest)
    if (out / "root.json").exists():
        raise InputError(
            f"{str(out)!r} already holds keys (root.json); export into a new directory"
        )
    files = [ring.dir / name for name in ONLINE_FILES]
    files += sorted((ring.dir / "retired").glob("fleet*.pem"))
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise KeyError_(f"cannot export online keys, missing: {missing}")
    written = []
    for f in files:
        rel = f.relative_to(ring.dir)
        mode = 0o644 if f.name.endswith(".pub.pem") else 0o600
        atomic_write_bytes(out / rel, f.read_bytes(), mode=mode)
        written.append(out / rel)
    sync_roots(ring.dir, out)
    return [*written, out / "root.json"]


def sync_roots(directory: str | Path, dest: str | Path) -> None:
    """Copy ``root.json`` and every root version to a server's keys dir (after a rotation)."""
    ring = KeyRing(directory)
    for root in ring.root_history():
        atomic_write_bytes(Path(dest) / "roots" / root.name, root.read_bytes(), mode=0o644)
    atomic_write_bytes(Path(dest) / "root.json", ring.root_bytes(), mode=0o644)
