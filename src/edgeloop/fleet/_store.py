"""The fleet's database edge: every read and write of its tables, given an open session.

Callers own the transaction (``edgeloop.db.write_session``), so a refused request rolls
back whatever it touched: an unknown, revoked or replayed request changes nothing.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol

import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy.orm import Session

from edgeloop.artifacts import DeviceProfile, DeviceReport
from edgeloop.db import (
    Base,
    DeviceRow,
    GenerationRow,
    NonceRow,
    ReleaseRow,
    ReportRow,
    TokenRow,
    VariantRow,
)
from edgeloop.errors import FleetError
from edgeloop.fleet._director import DeviceState, FleetState
from edgeloop.protocol import (
    CheckIn,
    DeviceInfo,
    EnrollRequest,
    InstalledModel,
    Release,
    RequestSignature,
    TokenInfo,
    TokenRequest,
    Variant,
    ed25519_from_hex,
    iso_time,
    verify_request,
)

__all__ = [
    "DeviceFields",
    "Refused",
    "authenticate",
    "checkin_columns",
    "checkin_state",
    "create_token",
    "device_counts",
    "device_info",
    "device_state",
    "enroll",
    "fleet_state",
    "generation",
    "get_device",
    "list_devices",
    "list_releases",
    "record_checkin",
    "insert_reports",
    "record_report",
    "report_row",
    "recent_reports",
    "release_of",
    "replay",
    "revoke",
    "sweep_reports",
    "variant_by_target",
    "verify_device",
    "verify_signature",
]


class Refused(FleetError):
    """A request the server refuses: ``status`` is its HTTP code, ``reason`` a metric label."""

    def __init__(self, status: int, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.reason = reason


class DeviceFields(Protocol):
    """What the director and the report checks read of a device: a :class:`DeviceRow` or the
    copy a process keeps of it (``_signed.KnownDevice``)."""

    @property
    def id(self) -> str: ...
    @property
    def model(self) -> str | None: ...
    @property
    def labels(self) -> dict[str, Any]: ...
    @property
    def profile(self) -> dict[str, Any] | None: ...


_PRUNE_SUFFIXES = ("0", "a", "A", "-")
_GENERATION = sa.select(GenerationRow.value).where(GenerationRow.id == 1)
_GENERATION_KEY = "edgeloop_fleet_generation"


def generation(s: Session) -> int | None:
    """The database's generation counter (``fleet_generation``: triggers bump it on every
    change a process may cache, revisions 0010 and 0014), read once per transaction and kept
    in the session for the rest of it, so a request's caches agree on one value."""
    kept = s.info.get(_GENERATION_KEY)
    transaction = s.get_transaction()
    if kept is not None and transaction is not None and kept[0] is transaction:
        return kept[1]  # type: ignore[no-any-return]
    # on the session's connection (its transaction): Core's execution, not the ORM's, which
    # was most of this one-row read's CPU
    value = s.connection().scalar(_GENERATION)
    out = int(value) if value is not None else None
    s.info[_GENERATION_KEY] = (s.get_transaction(), out)
    return out


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def _hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


# --- enrollment ---------------------------------------------------------------------------


def create_token(s: Session, req: TokenRequest, now: datetime) -> TokenInfo:
    token = "elt_" + secrets.token_urlsafe(24)
    expires = now + timedelta(seconds=req.ttl_s)
    s.add(
        TokenRow(
            token_sha256=_hash_token(token),
            model=req.model,
            labels=dict(req.labels),
            created_at=now,
            expires_at=expires,
            uses_left=req.uses,
        )
    )
    return TokenInfo(token=token, expires_at=iso_time(expires), model=req.model, uses=req.uses)


def enroll(s: Session, req: EnrollRequest, now: datetime) -> DeviceRow:
    """Spend the one-time token and create the device; Refused(401/409) changes nothing."""
    row = s.scalars(
        sa.select(TokenRow).where(TokenRow.token_sha256 == _hash_token(req.token))
    ).first()
    if row is None:
        raise Refused(401, "bad_token", "enrollment token is not one this server issued")
    if row.uses_left <= 0:
        raise Refused(401, "used_token", "enrollment token was already used")
    expires = _utc(row.expires_at)
    if expires is not None and expires <= now:
        raise Refused(401, "expired_token", f"enrollment token expired at {iso_time(expires)}")
    taken = s.scalars(
        sa.select(DeviceRow.id).where(DeviceRow.signing_key == req.signing_key)
    ).first()
    if taken is not None:
        raise Refused(409, "conflict", f"signing key is already enrolled as device {taken}")
    device_id = "d-" + secrets.token_hex(16)
    # Spend one use only if one is left now (two processes may race for the last one).
    spent = s.execute(
        sa.update(TokenRow)
        .where(TokenRow.id == row.id, TokenRow.uses_left > 0)
        .values(uses_left=TokenRow.uses_left - 1, used_at=now, device_id=device_id)
    )
    if getattr(spent, "rowcount", 0) != 1:
        raise Refused(401, "used_token", "enrollment token was used by a concurrent enrollment")
    device = DeviceRow(
        id=device_id,
        signing_key=req.signing_key,
        encryption_key=req.encryption_key,
        name=req.name,
        labels={**row.labels, **req.labels},
        model=row.model,
        enrolled_at=now,
        last_seen=now,
        agent_version=req.agent_version,
        agent_build=req.agent_build,
        profile=req.profile.to_dict(),
        health="unknown",
        revoked=False,
    )
    s.add(device)
    s.flush()
    return device


# --- device authentication -----------------------------------------------------------------


def _insert_nonce(s: Session, device_id: str, nonce: str, now: datetime) -> bool:
    """Record a nonce; False if it was there already (one statement, no failed transaction)."""
    values = {"device_id": device_id, "nonce": nonce, "seen_at": now}
    dialect = s.get_bind().dialect.name
    if dialect == "sqlite":
        from sqlalchemy.dialects import sqlite

        stmt: Any = sqlite.insert(NonceRow).on_conflict_do_nothing()
    elif dialect == "postgresql":
        from sqlalchemy.dialects import postgresql

        stmt = postgresql.insert(NonceRow).on_conflict_do_nothing()
    else:
        stmt = None
    if stmt is not None:
        inserted = s.execute(stmt.values(**values).returning(NonceRow.nonce)).first()
        return inserted is not None
    try:
        with s.begin_nested():
            s.add(NonceRow(**values))
    except sa.exc.IntegrityError:
        return False
    return True


def verify_device(
    s: Session,
    sig: RequestSignature,
    method: str,
    path: str,
    body: bytes,
    *,
    now: datetime,
    max_skew_s: float,
) -> DeviceRow:
    """The enrolled, unrevoked device whose key signed this request (its nonce not checked:
    :func:`authenticate` does, or the check-in's group commit, ``_batch.CheckinWriter``)."""
    device = s.get(DeviceRow, sig.device_id)
    if device is None:
        raise Refused(401, "unknown_device", f"device {sig.device_id!r} is not enrolled here")
    verify_signature(
        sig,
        ed25519_from_hex(device.signing_key),
        device.revoked,
        method,
        path,
        body,
        now=now,
        max_skew_s=max_skew_s,
    )
    return device


def verify_signature(
    sig: RequestSignature,
    key: Ed25519PublicKey,
    revoked: bool,
    method: str,
    path: str,
    body: bytes,
    *,
    now: datetime,
    max_skew_s: float,
) -> None:
    """Refused (401) unless ``key`` signed this request within the clock skew; (403) when the
    device is revoked. The nonce is not checked here."""
    try:
        verify_request(sig, key, method, path, body, now=now.timestamp(), max_skew_s=max_skew_s)
    except FleetError as e:
        reason = "stale" if "server clock" in str(e) else "bad_signature"
        raise Refused(401, reason, str(e)) from e
    if revoked:
        raise Refused(403, "revoked", f"device {sig.device_id!r} was revoked")


def replay(device_id: str, nonce: str) -> Refused:
    return Refused(401, "replay", f"nonce {nonce!r} of device {device_id!r} was seen before")


def authenticate(
    s: Session,
    sig: RequestSignature,
    method: str,
    path: str,
    body: bytes,
    *,
    now: datetime,
    max_skew_s: float,
) -> DeviceRow:
    """The device that signed this request; records its nonce so a replay is refused."""
    device = verify_device(s, sig, method, path, body, now=now, max_skew_s=max_skew_s)
    # The primary key (device, nonce) refuses a replay, also one racing in another process.
    if not _insert_nonce(s, device.id, sig.nonce, now):
        raise replay(device.id, sig.nonce)
    if sig.nonce.endswith(_PRUNE_SUFFIXES):  # about one request in 16 sweeps expired nonces
        s.execute(
            sa.delete(NonceRow).where(
                NonceRow.device_id == device.id,
                NonceRow.seen_at < now - timedelta(seconds=2 * max_skew_s),
            )
        )
    return device


# --- check-in, telemetry, inventory ---------------------------------------------------------


def checkin_columns(checkin: CheckIn, now: datetime) -> dict[str, Any]:
    """The device row's columns a check-in sets (``profile`` only when it sent one)."""
    out: dict[str, Any] = {
        "last_seen": now,
        "agent_version": checkin.agent_version,
        "agent_build": checkin.agent_build,
        "installed": checkin.installed.to_dict() if checkin.installed else None,
        "installed_version": checkin.installed.version if checkin.installed else None,
        "known_good": checkin.known_good.to_dict() if checkin.known_good else None,
        "health": checkin.health,
        "last_error": checkin.last_error,
    }
    if checkin.profile is not None:
        out["profile"] = checkin.profile.to_dict()
    return out


def record_checkin(device: DeviceRow, checkin: CheckIn, now: datetime) -> None:
    for name, value in checkin_columns(checkin, now).items():
        setattr(device, name, value)


def checkin_state(
    device: DeviceFields, checkin: CheckIn, profile: DeviceProfile | None = None
) -> DeviceState:
    """What the director knows of ``device`` once this check-in is recorded (without
    changing the row: the check-in's writes go through the group commit). ``profile``: the
    device's stored profile already parsed (else parsed here)."""
    if checkin.profile is not None:
        profile = checkin.profile
    elif profile is None:
        profile = _profile(device.profile)
    return DeviceState(
        device_id=device.id,
        model=device.model,
        profile=profile,
        installed=checkin.installed,
        known_good=checkin.known_good,
        labels=dict(device.labels),
        health=checkin.health,
        last_error=checkin.last_error,
    )


def report_row(device_id: str, report: DeviceReport, now: datetime) -> dict[str, Any]:
    """The ``fleet_reports`` row of a validated report (the group commit inserts it)."""
    return {
        "device_id": device_id,
        "received_at": now,
        "model": report.model,
        "version": report.version,
        "window_s": float(report.window_s),
        "metrics": dict(report.metrics),
        "report": report.to_dict(),
    }


def sweep_reports(s: Session, device_ids: Sequence[str], before: datetime) -> None:
    """Drop these devices' reports received before ``before`` (the retention)."""
    if device_ids:
        s.execute(
            sa.delete(ReportRow).where(
                ReportRow.device_id.in_(sorted(set(device_ids))), ReportRow.received_at < before
            )
        )


def insert_reports(s: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Insert :func:`report_row` rows in one statement (one multi-row INSERT)."""
    if rows:
        s.execute(sa.insert(ReportRow), list(rows))


def record_report(
    s: Session,
    device: DeviceRow,
    report: DeviceReport,
    now: datetime,
    *,
    keep: timedelta | None = None,
) -> None:
    """Store a report; with ``keep``, also drop this device's reports older than that."""
    if keep is not None:
        sweep_reports(s, [device.id], now - keep)
    insert_reports(s, [report_row(device.id, report, now)])
    device.last_seen = now


def _installed(data: dict[str, Any] | None) -> InstalledModel | None:
    return InstalledModel.from_dict(data) if data else None


def _profile(data: dict[str, Any] | None) -> DeviceProfile | None:
    return DeviceProfile.from_dict(data) if data else None


def device_state(device: DeviceRow) -> DeviceState:
    return DeviceState(
        device_id=device.id,
        model=device.model,
        profile=_profile(device.profile),
        installed=_installed(device.installed),
        known_good=_installed(device.known_good),
        labels=dict(device.labels),
        health=device.health,
        last_error=device.last_error,
    )


def device_info(device: DeviceRow, now: datetime, stale_after: timedelta) -> DeviceInfo:
    """The inventory row; ``online`` when the device was heard from within ``stale_after``."""
    seen = _utc(device.last_seen)
    return DeviceInfo(
        online=bool(seen is not None and not device.revoked and now - seen <= stale_after),
        device_id=device.id,
        enrolled_at=iso_time(_utc(device.enrolled_at) or device.enrolled_at),
        revoked=device.revoked,
        name=device.name,
        model=device.model,
        labels=dict(device.labels),
        last_seen=iso_time(seen) if seen else None,
        agent_version=device.agent_version,
        profile=_profile(device.profile),
        installed=_installed(device.installed),
        known_good=_installed(device.known_good),
        health=device.health,
        last_error=device.last_error,
    )


def get_device(s: Session, device_id: str) -> DeviceRow:
    device = s.get(DeviceRow, device_id)
    if device is None:
        raise Refused(404, "not_found", f"no device {device_id!r} in this fleet")
    return device


def list_devices(s: Session, limit: int | None = None, offset: int = 0) -> list[DeviceRow]:
    q = sa.select(DeviceRow).order_by(DeviceRow.enrolled_at, DeviceRow.id).offset(offset)
    return list(s.scalars(q.limit(limit) if limit is not None else q))


def revoke(s: Session, device_id: str, now: datetime) -> DeviceRow:
    device = get_device(s, device_id)
    if not device.revoked:
        device.revoked = True
        device.revoked_at = now
    return device


def recent_reports(s: Session, device_id: str, limit: int = 20) -> list[dict[str, Any]]:
    rows = s.scalars(
        sa.select(ReportRow)
        .where(ReportRow.device_id == device_id)
        .order_by(ReportRow.received_at.desc(), ReportRow.id.desc())
        .limit(limit)
    )
    return [dict(r.report) for r in rows]


def device_counts(s: Session, now: datetime, stale_after: timedelta) -> dict[str, int]:
    """Devices by state, for /metrics: enrolled, revoked, active (seen lately), per health."""
    rows = s.execute(sa.select(DeviceRow.revoked, DeviceRow.health, DeviceRow.last_seen)).all()
    counts = {"enrolled": 0, "revoked": 0, "active": 0}
    for revoked, health, last_seen in rows:
        counts["enrolled"] += 1
        if revoked:
            counts["revoked"] += 1
            continue
        seen = _utc(last_seen)
        if seen is not None and now - seen <= stale_after:
            counts["active"] += 1
        counts[f"health_{health}"] = counts.get(f"health_{health}", 0) + 1
    return counts


# --- releases and the director's inputs -------------------------------------------------------


def release_of(row: ReleaseRow, variants: Sequence[VariantRow]) -> Release:
    published = _utc(row.published_at)
    return Release(
        model=row.model,
        version=row.version,
        variants=tuple(
            Variant(v.variant, v.target, v.sha256, v.length, dict(v.requires))
            for v in sorted(variants, key=lambda v: v.variant)
        ),
        published_at=iso_time(published) if published else None,
    )


def list_releases(s: Session, models: Sequence[str] | None = None) -> list[Release]:
    """Published releases (by model, then version) with their variants, in one query."""
    q = (
        sa.select(ReleaseRow, VariantRow)
        .join(VariantRow, VariantRow.release_id == ReleaseRow.id, isouter=True)
        .order_by(ReleaseRow.model, ReleaseRow.version)
    )
    if models is not None:
        q = q.where(ReleaseRow.model.in_(list(models)))
    rows: dict[int, tuple[ReleaseRow, list[VariantRow]]] = {}
    for release, variant in s.execute(q):
        entry = rows.setdefault(release.id, (release, []))
        if variant is not None:
            entry[1].append(variant)
    return [release_of(r, vs) for r, vs in rows.values()]


def desired_versions(s: Session, alias: str, model: str | None = None) -> dict[str, int]:
    """Each model's version that the registry alias points at (read live: no cache)."""
    t = Base.metadata.tables
    aliases, models, versions = t["aliases"], t["models"], t["model_versions"]
    q = (
        sa.select(models.c.name, versions.c.version)
        .select_from(
            aliases.join(models, aliases.c.model_id == models.c.id).join(
                versions, aliases.c.version_id == versions.c.id
            )
        )
        .where(aliases.c.name == alias)
    )
    if model is not None:
        q = q.where(models.c.name == model)
    return {str(name): int(version) for name, version in s.execute(q)}


def fleet_state(s: Session, device: DeviceFields, alias: str) -> FleetState:
    """What the director needs for one device: its model's releases and desired version."""
    desired = desired_versions(s, alias, device.model)
    model = device.model or (next(iter(desired)) if len(desired) == 1 else None)
    releases: dict[str, list[Release]] = {}
    if model is not None:
        releases[model] = list_releases(s, [model])
    return FleetState(releases=releases, desired=desired, alias=alias)


def variant_by_target(s: Session, target: str) -> VariantRow | None:
    return s.scalars(sa.select(VariantRow).where(VariantRow.target == target)).first()
