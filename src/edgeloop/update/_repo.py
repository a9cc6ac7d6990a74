"""A TUF repository of bundles on plain files (python-tuf's Metadata API).

::

    REPO/metadata/1.root.json ... N.root.json   every root, for clients to walk rotations
    REPO/metadata/root.json                      the current root
    REPO/metadata/timestamp.json
    REPO/metadata/<V>.snapshot.json, <V>.targets.json   (consistent snapshots)
    REPO/targets/<name>/<version>/<sha256>.<file>.elb
    REPO/targets/<name>/<version>/<sha256>.<file>.from-<A>-<sha12>.eld   deltas A -> version

A delta target's ``custom`` carries ``delta: {from_version, base_sha256, bundle_sha256,
bundle_length, target}``: the device picks it when it runs the base bundle (``base_sha256``)
and the delta is smaller than the bundle the director assigned (``bundle_sha256``); revoking
the version removes its deltas with it.

Any static file server can serve ``REPO`` (``/metadata/`` and ``/targets/``). Every release
adds a target, bumps targets, snapshot and timestamp and re-signs them; files are written
atomically with the timestamp last, so a client never sees a half-published release.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuf.api.metadata import Metadata, MetaFile, Snapshot, TargetFile, Targets, Timestamp

from edgeloop._io import atomic_write_bytes, read_bytes
from edgeloop.bundle import DeviceKey, load_trust, make_delta, read_delta, verify
from edgeloop.errors import InputError, SecurityError, UpdateError
from edgeloop.update._client import chunk_list
from edgeloop.update._keyring import KeyRing

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

__all__ = ["Expiry", "PublishedTarget", "Repository"]


@dataclass(frozen=True)
class Expiry:
    """How long each role's metadata stays valid after it is signed.

    The timestamp's lifetime bounds a freeze attack: a client refuses metadata older than this,
    so a server must re-sign it (``Repository.refresh_timestamp``) at least this often.
    """

    targets: timedelta = timedelta(days=90)
    snapshot: timedelta = timedelta(days=7)
    timestamp: timedelta = timedelta(days=1)


@dataclass(frozen=True)
class PublishedTarget:
    path: str  # the TUF target path clients ask for, e.g. "kws/3/kws-3.elb"
    sha256: str
    length: int
    name: str
    version: int
    targets_version: int


def _publish(path: Path, data: bytes) -> None:
    """Repository files are public (signed or encrypted): readable by any web server user."""
    atomic_write_bytes(path, data, mode=0o644)


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Repository:
    """Writes the repository at ``repo_dir`` with the keys in ``keys`` (a :class:`KeyRing`)."""

    def __init__(
        self,
        repo_dir: str | Path,
        keys: KeyRing | str | Path,
        *,
        expiry: Expiry | None = None,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.dir = Path(repo_dir)
        self.keys = keys if isinstance(keys, KeyRing) else KeyRing(keys)
        self.expiry = expiry or Expiry()
        self.clock = clock
        self.metadata_dir = self.dir / "metadata"
        self.targets_dir = self.dir / "targets"

    # --- reading the current state --------------------------------------------------------

    def _load(self, filename: str) -> Metadata[Any]:
        try:
            return Metadata.from_bytes(read_bytes(self.metadata_dir / filename, "metadata"))
        except Exception as e:
            raise UpdateError(f"repository {str(self.dir)!r}: cannot read {filename}: {e}") from e

    def exists(self) -> bool:
        return (self.metadata_dir / "timestamp.json").is_file()

    def current(self) -> tuple[Metadata[Any], Metadata[Any], Metadata[Any]]:
        """The current (targets, snapshot, timestamp), following the timestamp's pointers."""
        ts = self._load("timestamp.json")
        snap = self._load(f"{ts.signed.snapshot_meta.version}.snapshot.json")
        tgt = self._load(f"{snap.signed.meta['targets.json'].version}.targets.json")
        return tgt, snap, ts

    def targets(self) -> dict[str, TargetFile]:
        return dict(self.current()[0].signed.targets)

    # --- writing --------------------------------------------------------------------------

    def _sync_roots(self) -> None:
        for path in self.keys.root_history():
            dest = self.metadata_dir / path.name
            if not dest.exists():
                _publish(dest, path.read_bytes())
        _publish(self.metadata_dir / "root.json", self.keys.root_bytes())

    def _sign(self, md: Metadata[Any], role: str) -> None:
        md.signatures.clear()
        for signer in self.keys.signers(role):
            md.sign(signer, append=True)

    def _write(self, tgt: Metadata[Any], snap: Metadata[Any], ts: Metadata[Any]) -> None:
        now = self.clock().replace(microsecond=0)
        tgt.signed.expires = now + self.expiry.targets
        snap.signed.expires = now + self.expiry.snapshot
        ts.signed.expires = now + self.expiry.timestamp
        snap.signed.meta["targets.json"] = MetaFile(version=tgt.signed.version)
        ts.signed.snapshot_meta = MetaFile(version=snap.signed.version)
        self._sign(tgt, "targets")
        self._sign(snap, "snapshot")
        self._sign(ts, "timestamp")
        self._sync_roots()
        _publish(self.metadata_dir / f"{tgt.signed.version}.targets.json", tgt.to_bytes())
        _publish(self.metadata_dir / f"{snap.signed.version}.snapshot.json", snap.to_bytes())
        _publish(self.metadata_dir / "timestamp.json", ts.to_bytes())

    def init(self) -> None:
        """Create empty targets, snapshot and timestamp (version 1) unless they exist."""
        if self.exists():
            self.resign()
            return
        self._write(Metadata(Targets()), Metadata(Snapshot()), Metadata(Timestamp()))

    def resign(self) -> None:
        """Bump and re-sign targets, snapshot and timestamp (after a key rotation)."""
        tgt, snap, ts = self.current()
        for md in (tgt, snap, ts):
            md.signed.version += 1
        self._write(tgt, snap, ts)

    def refresh_timestamp(self) -> int:
        """Re-sign the timestamp with a fresh expiry (run it more often than it expires)."""
        tgt, snap, ts = self.current()
        ts.signed.version += 1
        ts.signed.expires = self.clock().replace(microsecond=0) + self.expiry.timestamp
        self._sign(ts, "timestamp")
        self._sync_roots()
        _publish(self.metadata_dir / "timestamp.json", ts.to_bytes())
        return int(ts.signed.version)

    def release(self, bundle: str | Path, target_path: str | None = None) -> PublishedTarget:
        """Publish a bundle: verify it against the keys' trust root, add it as a target."""
        src = Path(bundle)
        data = read_bytes(src, "bundle")
        manifest = verify(data, load_trust(self.keys.dir))
        path = target_path or f"{manifest.name}/{manifest.version}/{src.name}"
        if path.startswith("/") or ".." in path.split("/"):
            raise InputError(f"target path {path!r} must be relative, without '..'")
        if not self.exists():
            self.init()
        tgt, snap, ts = self.current()
        info = TargetFile.from_data(path, data, ["sha256"])
        old = tgt.signed.targets.get(path)
        if old is not None and old.hashes != info.hashes:
            raise InputError(
                f"target {path!r} is already published with another sha256; bump the version"
            )
        info.unrecognized_fields["custom"] = {
            "name": manifest.name,
            "version": manifest.version,
            "requirements": manifest.requirements,
            "chunks": chunk_list(data),
        }
        digest = info.hashes["sha256"]
        dirname, _, base = path.rpartition("/")
        _publish(self.targets_dir / dirname / f"{digest}.{base}", data)
        tgt.signed.targets[path] = info
        for md in (tgt, snap, ts):
            md.signed.version += 1
        self._write(tgt, snap, ts)
        return PublishedTarget(
            path, digest, len(data), manifest.name, manifest.version, int(tgt.signed.version)
        )

    def target_bytes(self, path: str) -> bytes:
        """The stored file of a listed target (its hash checked against the signed listing)."""
        info = self.targets().get(path)
        if info is None:
            raise InputError(f"target {path!r} is not in the signed targets of {str(self.dir)!r}")
        dirname, _, base = path.rpartition("/")
        data = read_bytes(self.targets_dir / dirname / f"{info.hashes['sha256']}.{base}", "target")
        try:
            info.verify_length_and_hashes(data)
        except Exception as e:
            raise UpdateError(f"stored target {path!r} does not match its listing: {e}") from e
        return data

    def release_delta(self, delta: bytes, path: str) -> PublishedTarget:
        """List a delta (``bundle.make_delta``) as a target; its version must be listed."""
        if path.startswith("/") or ".." in path.split("/"):
            raise InputError(f"target path {path!r} must be relative, without '..'")
        info = read_delta(delta, load_trust(self.keys.dir))
        tgt, snap, ts = self.current()
        full = [
            (p, t)
            for p, t in tgt.signed.targets.items()
            if t.hashes.get("sha256") == info.bundle_sha256
        ]
        if not full:
            raise InputError(
                f"delta to {info.name}@{info.target_version} rebuilds bundle "
                f"{info.bundle_sha256[:16]}, which the signed targets do not list; release it first"
            )
        tinfo = TargetFile.from_data(path, delta, ["sha256"])
        old = tgt.signed.targets.get(path)
        if old is not None and old.hashes != tinfo.hashes:
            raise InputError(f"target {path!r} is already published with another sha256")
        tinfo.unrecognized_fields["custom"] = {
            "name": info.name,
            "version": info.target_version,
            "delta": {
                "from_version": info.base_version,
                "base_sha256": info.base_bundle_sha256,
                "bundle_sha256": info.bundle_sha256,
                "bundle_length": info.bundle_length,
                "target": full[0][0],
            },
            "chunks": chunk_list(delta),
        }
        digest = tinfo.hashes["sha256"]
        dirname, _, base = path.rpartition("/")
        _publish(self.targets_dir / dirname / f"{digest}.{base}", delta)
        tgt.signed.targets[path] = tinfo
        for md in (tgt, snap, ts):
            md.signed.version += 1
        self._write(tgt, snap, ts)
        return PublishedTarget(
            path, digest, len(delta), info.name, info.target_version, int(tgt.signed.version)
        )

    def write_deltas(
        self,
        target_path: str,
        signing_key: Ed25519PrivateKey,
        fleet_key: DeviceKey,
        *,
        from_bundles: set[str] | None = None,
    ) -> list[PublishedTarget]:
        """Deltas to the listed bundle ``target_path`` from the other listed bundles of its
        model (only those whose sha256 is in ``from_bundles`` when given: the versions the
        fleet inventory says devices run); a delta not smaller than the bundle is skipped, one
        already listed is kept. Returns the deltas listed now.
        """
        targets = self.targets()
        want = targets.get(target_path)
        if want is None:
            raise InputError(f"target {target_path!r} is not in the signed targets")
        custom = want.unrecognized_fields.get("custom", {})
        name, version = custom.get("name"), custom.get("version")
        b = self.target_bytes(target_path)
        out: list[PublishedTarget] = []
        for path, t in sorted(targets.items()):
            c = t.unrecognized_fields.get("custom", {})
            if (
                path == target_path
                or not isinstance(c, dict)
                or "delta" in c
                or c.get("name") != name
                or c.get("version") == version
                or (from_bundles is not None and t.hashes.get("sha256") not in from_bundles)
            ):
                continue
            stem = target_path.rpartition("/")[2].removesuffix(".elb")
            sha = str(t.hashes.get("sha256", ""))[:12]
            dpath = f"{target_path.rpartition('/')[0]}/{stem}.from-{c.get('version')}-{sha}.eld"
            if dpath in targets:  # listed by an earlier run: a delta is not deterministic
                continue
            try:
                delta = make_delta(self.target_bytes(path), b, signing_key, fleet_key)
            except SecurityError as e:
                raise InputError(f"cannot write a delta from {path!r}: {e}") from e
            if len(delta) >= len(b):
                continue
            out.append(self.release_delta(delta, dpath))
        return out

    def revoke(self, name: str, version: int) -> list[str]:
        """Remove every target of ``name@version`` from the signed targets; the paths removed.

        Devices refuse to install, switch to or keep running a version the current targets
        metadata no longer lists (docs/security.md, "Revocation"); the bundle files stay, so
        re-releasing the same bytes restores it.
        """
        tgt, snap, ts = self.current()
        gone = [
            path
            for path, info in tgt.signed.targets.items()
            if isinstance(custom := info.unrecognized_fields.get("custom"), dict)
            and custom.get("name") == name
            and custom.get("version") == version
        ]
        if not gone:
            raise InputError(
                f"{name}@{version} is not in the signed targets of {str(self.dir)!r}; "
                "nothing to revoke"
            )
        for path in gone:
            del tgt.signed.targets[path]
        for md in (tgt, snap, ts):
            md.signed.version += 1
        self._write(tgt, snap, ts)
        return sorted(gone)
