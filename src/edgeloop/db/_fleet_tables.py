"""The fleet's tables, on the service layer's shared :class:`~edgeloop.db.Base`.

::

    fleet_enroll_tokens                       one-time tokens (only their sha256 is stored)
    fleet_devices ──< fleet_nonces            (device, nonce) seen: replay protection
                  └──< fleet_reports          telemetry, one row per DeviceReport
    fleet_releases ──< fleet_release_variants one bundle per variant, published to TUF
    fleet_generation                          one counter, bumped by triggers on the tables the
                                              director reads (releases, aliases ...; 0010)

Created by the Alembic revision ``0002_fleet``; a test checks that the two agree.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from edgeloop.db._engine import Base

__all__ = [
    "FLEET_TABLES",
    "DeviceRow",
    "GenerationRow",
    "NonceRow",
    "ReleaseRow",
    "ReportRow",
    "TokenRow",
    "VariantRow",
]

_SHA = sa.String(64)
_NAME = sa.String(200)
_WHEN = sa.DateTime(timezone=True)


class TokenRow(Base):
    __tablename__ = "fleet_enroll_tokens"
    id: Mapped[int] = mapped_column(primary_key=True)
    token_sha256: Mapped[str] = mapped_column(_SHA, unique=True)
    model: Mapped[str | None] = mapped_column(_NAME, nullable=True)
    labels: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    created_at: Mapped[datetime] = mapped_column(_WHEN)
    expires_at: Mapped[datetime] = mapped_column(_WHEN)
    uses_left: Mapped[int] = mapped_column(sa.Integer)  # 1 for a one-time token
    used_at: Mapped[datetime | None] = mapped_column(_WHEN, nullable=True)  # the last use
    device_id: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)  # the last one


class DeviceRow(Base):
    __tablename__ = "fleet_devices"
    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    signing_key: Mapped[str] = mapped_column(_SHA, unique=True)  # hex raw Ed25519
    encryption_key: Mapped[str] = mapped_column(_SHA)  # hex raw X25519
    name: Mapped[str | None] = mapped_column(_NAME, nullable=True)
    labels: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    model: Mapped[str | None] = mapped_column(_NAME, nullable=True, index=True)
    enrolled_at: Mapped[datetime] = mapped_column(_WHEN)
    last_seen: Mapped[datetime | None] = mapped_column(_WHEN, nullable=True)
    agent_version: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    # sha256 of the agent's installed files, as it last reported (revision 0005)
    agent_build: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    profile: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON, nullable=True)
    installed: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON, nullable=True)
    installed_version: Mapped[int | None] = mapped_column(sa.Integer, nullable=True, index=True)
    known_good: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON, nullable=True)
    health: Mapped[str] = mapped_column(sa.String(16))
    last_error: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    revoked: Mapped[bool] = mapped_column(sa.Boolean)
    revoked_at: Mapped[datetime | None] = mapped_column(_WHEN, nullable=True)


class NonceRow(Base):
    __tablename__ = "fleet_nonces"
    device_id: Mapped[str] = mapped_column(
        sa.ForeignKey("fleet_devices.id", ondelete="CASCADE"), primary_key=True
    )
    nonce: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    seen_at: Mapped[datetime] = mapped_column(_WHEN, index=True)


class ReportRow(Base):
    __tablename__ = "fleet_reports"
    __table_args__ = (sa.Index("ix_fleet_reports_device_received", "device_id", "received_at"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    device_id: Mapped[str] = mapped_column(sa.ForeignKey("fleet_devices.id", ondelete="CASCADE"))
    received_at: Mapped[datetime] = mapped_column(_WHEN)
    model: Mapped[str | None] = mapped_column(_NAME, nullable=True)
    version: Mapped[int | None] = mapped_column(sa.Integer, nullable=True)
    window_s: Mapped[float] = mapped_column(sa.Float)
    metrics: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    report: Mapped[dict[str, Any]] = mapped_column(sa.JSON)  # the whole DeviceReport


class ReleaseRow(Base):
    __tablename__ = "fleet_releases"
    __table_args__ = (sa.UniqueConstraint("model", "version"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    model: Mapped[str] = mapped_column(_NAME)
    version: Mapped[int] = mapped_column(sa.Integer)
    published_at: Mapped[datetime] = mapped_column(_WHEN)


class VariantRow(Base):
    __tablename__ = "fleet_release_variants"
    __table_args__ = (sa.UniqueConstraint("release_id", "variant"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    release_id: Mapped[int] = mapped_column(
        sa.ForeignKey("fleet_releases.id", ondelete="CASCADE"), index=True
    )
    variant: Mapped[str] = mapped_column(_NAME)
    target: Mapped[str] = mapped_column(sa.String(512), unique=True)
    sha256: Mapped[str] = mapped_column(_SHA)
    length: Mapped[int] = mapped_column(sa.BigInteger)
    requires: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    fleet_wrap: Mapped[dict[str, Any]] = mapped_column(sa.JSON)  # data key wrapped to fleet key


class GenerationRow(Base):
    """One row (id 1): database triggers bump ``value`` on every change to the releases,
    variants, aliases, models or versions (revision 0010), and to a device's signing key,
    revocation, model, labels or profile (revision 0014), so a process's cache of them knows
    it is stale."""

    __tablename__ = "fleet_generation"
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    value: Mapped[int] = mapped_column(sa.BigInteger)


FLEET_TABLES = frozenset(
    t.__tablename__
    for t in (TokenRow, DeviceRow, NonceRow, ReportRow, ReleaseRow, VariantRow, GenerationRow)
)
