"""Publishing registry versions to the TUF repository, re-wrapping data keys, timestamp upkeep.

A publish runs inside one write transaction, which also serialises publishers across server
processes (SQLite's write lock; a PostgreSQL advisory lock), so two processes never write TUF
metadata at once. The TUF files are written before the release rows commit: a release the
director can assign always has its targets in the repository.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from sqlalchemy.orm import Session

from edgeloop._io import read_bytes
from edgeloop.artifacts import sha256_file
from edgeloop.bundle import key_id, parse_container, parse_manifest, unwrap_data_key, wrap_data_key
from edgeloop.db import ReleaseRow, VariantRow
from edgeloop.errors import EdgeloopError, RegistryError, SecurityError
from edgeloop.fleet._monitor_store import store_bundle_reference
from edgeloop.fleet._store import Refused, release_of
from edgeloop.protocol import Release, x25519_from_hex
from edgeloop.registry import BlobStore, get_version
from edgeloop.update import PublishedTarget, Repository

__all__ = [
    "lock_publishing",
    "publish",
    "refresh_timestamp_if_due",
    "rewrap_for_device",
    "target_name",
]

_PUBLISH_LOCK = 0x666C_6565_7400  # "fleet": PostgreSQL advisory lock for TUF writes


def lock_publishing(s: Session) -> None:
    """Serialise TUF writers across processes (SQLite already holds its write lock)."""
    if s.get_bind().dialect.name == "postgresql":
        s.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PUBLISH_LOCK})


def target_name(model: str, version: int, variant: str) -> str:
    return f"{model}/{version}/{model}-{version}-{variant}.elb"


def _fleet_wrap(
    encryption: dict[str, Any], fleet_keys: Sequence[X25519PrivateKey]
) -> dict[str, Any]:
    recipients = encryption.get("recipients")
    kids = {key_id(k) for k in fleet_keys}
    if isinstance(recipients, list):
        for entry in recipients:
            if isinstance(entry, dict) and entry.get("kid") in kids:
                return dict(entry)
    raise Refused(
        409,
        "not_for_fleet",
        f"bundle is not encrypted to this fleet's key {key_id(fleet_keys[0])[:16]}; "
        "pack it with --encrypt-to KEYS/fleet.pub.pem",
    )


def publish(
    s: Session,
    blobs: BlobStore,
    repo: Repository,
    fleet_keys: Sequence[X25519PrivateKey],
    model: str,
    version: int,
    now: datetime,
) -> tuple[Release, bool]:
    """Publish every bundle of ``model@version``; return the release and whether it is new."""
    lock_publishing(s)
    existing = s.scalars(
        sa.select(ReleaseRow).where(ReleaseRow.model == model, ReleaseRow.version == version)
    ).first()
    if existing is not None:
        variants = list(
            s.scalars(sa.select(VariantRow).where(VariantRow.release_id == existing.id))
        )
        return release_of(existing, variants), False
    try:
        info = get_version(s, model, version)
    except RegistryError as e:
        raise Refused(404, "not_found", str(e)) from e
    if not info.bundles:
        raise Refused(
            409, "no_bundles", f"{model}@{version} has no bundles; attach one with the registry"
        )
    row = ReleaseRow(model=model, version=version, published_at=now)
    s.add(row)
    s.flush()
    for bundle in info.bundles:
        path = blobs.path(bundle.sha256)
        try:
            manifest = parse_manifest(parse_container(read_bytes(path, "bundle")).manifest)
            wrap = _fleet_wrap(manifest.encryption, fleet_keys)
            # the version's own monitoring reference, from its signed manifest
            store_bundle_reference(s, model, version, manifest.monitor, now)
            target = _release(repo, path, target_name(model, version, bundle.variant))
        except Refused:
            raise
        except EdgeloopError as e:
            raise Refused(
                409, "bad_bundle", f"bundle {bundle.variant!r} of {model}@{version}: {e}"
            ) from e
        s.add(
            VariantRow(
                release_id=row.id,
                variant=bundle.variant,
                target=target.path,
                sha256=target.sha256,
                length=target.length,
                requires=dict(bundle.requirements),
                fleet_wrap=wrap,
            )
        )
    s.flush()
    return _one(s, row), True


def _release(repo: Repository, path: Path, name: str) -> PublishedTarget:
    """The target as the release side listed it, else listed now (needs the targets key here).

    With the targets key offline (the Uptane split), the build side runs ``edgeloop release
    BUNDLE --repo DATA/tuf --keys KEYS --target NAME`` first; publishing then only records it.
    """
    listed = repo.targets().get(name) if repo.exists() else None
    if listed is not None:
        digest = sha256_file(path)
        if listed.hashes.get("sha256") != digest:
            raise Refused(
                409,
                "listed_differently",
                f"target {name!r} is listed with sha256 {listed.hashes.get('sha256', '')[:16]}, "
                f"the registry's bundle is {digest[:16]}",
            )
        custom = listed.unrecognized_fields.get("custom", {})
        return PublishedTarget(
            name,
            digest,
            listed.length,
            str(custom.get("name", "")),
            int(custom.get("version", 0)),
            0,
        )
    return repo.release(path, name)


def _one(s: Session, row: ReleaseRow) -> Release:
    variants = list(s.scalars(sa.select(VariantRow).where(VariantRow.release_id == row.id)))
    return release_of(row, variants)


def rewrap_for_device(
    variant: VariantRow, fleet_keys: Sequence[X25519PrivateKey], device_encryption_key: str
) -> dict[str, str]:
    """The variant's data key, unwrapped with the fleet key and wrapped for the device."""
    kid = variant.fleet_wrap.get("kid")
    key = next((k for k in fleet_keys if key_id(k) == kid), None)
    if key is None:
        raise Refused(
            409,
            "fleet_key_gone",
            f"target {variant.target!r} is wrapped to a fleet key this server lacks",
        )
    try:
        data_key = unwrap_data_key({"recipients": [variant.fleet_wrap]}, key)
    except SecurityError as e:
        raise Refused(409, "bad_wrap", f"target {variant.target!r}: {e}") from e
    return wrap_data_key(data_key, x25519_from_hex(device_encryption_key))


def refresh_timestamp_if_due(s: Session, repo: Repository, now: datetime) -> bool:
    """Re-sign timestamp.json when less than half its lifetime is left; True if it did."""
    lock_publishing(s)
    ts = repo.current()[2]
    left = ts.signed.expires - now
    if left > repo.expiry.timestamp / 2:
        return False
    repo.refresh_timestamp()
    return True
