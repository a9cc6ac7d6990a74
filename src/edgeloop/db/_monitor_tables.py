"""The monitoring tables, on the service layer's shared :class:`~edgeloop.db.Base`.

::

    monitor_references    each version's monitoring reference (from its bundle, or an
                          explicit re-baseline, recorded with its reason); the newest row of a
                          (model, version) is the one sketches are checked against
    monitor_sketches      per device, version, reference and server window, the sum of the
                          device's validated sketches (the device's labels at the last one);
                          bounded by retention
    monitor_evaluations   each evaluation of a (model, version, cohort): metrics and report
                          (the report's plots over time); bounded by retention
    monitor_alerts        alert state with hysteresis per (model, version, cohort)
    monitor_events        alerts raised and cleared, and the actions taken
    monitor_jobs          work an alert asks for (a fine-tuning job for the alerting model,
                          version and cohort): queued -> running -> succeeded | failed,
                          claimed by a worker through the admin API

Created by the Alembic revisions ``0006_monitor`` and ``0008_monitor_jobs``; a test checks that
the two agree.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from edgeloop.db._engine import Base

__all__ = [
    "MONITOR_TABLES",
    "MonitorAlertRow",
    "MonitorEvaluationRow",
    "MonitorEventRow",
    "MonitorJobRow",
    "MonitorReferenceRow",
    "MonitorSketchRow",
]

_NAME = sa.String(200)
_WHEN = sa.DateTime(timezone=True)
_COHORT = sa.String(300)  # "*" (every device) or "label=value"


class MonitorReferenceRow(Base):
    __tablename__ = "monitor_references"
    __table_args__ = (sa.Index("ix_monitor_references_model_version", "model", "version"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    model: Mapped[str] = mapped_column(_NAME)
    version: Mapped[int] = mapped_column(sa.Integer)
    sha256: Mapped[str] = mapped_column(sa.String(64))
    reference: Mapped[str] = mapped_column(sa.Text)  # canonical JSON, as signed
    origin: Mapped[str] = mapped_column(sa.String(32))  # "bundle" or "rebaseline"
    reason: Mapped[str] = mapped_column(sa.Text)
    created_by: Mapped[str] = mapped_column(_NAME)
    created_at: Mapped[datetime] = mapped_column(_WHEN)


class MonitorSketchRow(Base):
    __tablename__ = "monitor_sketches"
    __table_args__ = (
        sa.Index("ix_monitor_sketches_model_version_id", "model", "version", "id"),
        sa.Index("ix_monitor_sketches_device_received", "device_id", "received_at"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    device_id: Mapped[str] = mapped_column(
        sa.ForeignKey("fleet_devices.id", ondelete="CASCADE")
    )
    model: Mapped[str] = mapped_column(_NAME)
    version: Mapped[int] = mapped_column(sa.Integer)
    reference_sha256: Mapped[str] = mapped_column(sa.String(64))
    window: Mapped[int] = mapped_column(sa.BigInteger)  # received_at // window_s
    received_at: Mapped[datetime] = mapped_column(_WHEN)
    n: Mapped[int] = mapped_column(sa.BigInteger)
    labels: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    sketch: Mapped[dict[str, Any]] = mapped_column(sa.JSON)


class MonitorEvaluationRow(Base):
    __tablename__ = "monitor_evaluations"
    __table_args__ = (sa.Index("ix_monitor_evaluations_model_version_at", "model", "version",
                               "at"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    model: Mapped[str] = mapped_column(_NAME)
    version: Mapped[int] = mapped_column(sa.Integer)
    cohort: Mapped[str] = mapped_column(_COHORT)
    at: Mapped[datetime] = mapped_column(_WHEN)
    alarm: Mapped[bool | None] = mapped_column(sa.Boolean, nullable=True)  # None: too few rows
    metrics: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    report: Mapped[dict[str, Any]] = mapped_column(sa.JSON)  # the DriftReport


class MonitorAlertRow(Base):
    __tablename__ = "monitor_alerts"
    __table_args__ = (sa.UniqueConstraint("model", "version", "cohort"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    model: Mapped[str] = mapped_column(_NAME)
    version: Mapped[int] = mapped_column(sa.Integer)
    cohort: Mapped[str] = mapped_column(_COHORT)
    active: Mapped[bool] = mapped_column(sa.Boolean)
    bad: Mapped[int] = mapped_column(sa.Integer)
    good: Mapped[int] = mapped_column(sa.Integer)
    since: Mapped[datetime | None] = mapped_column(_WHEN, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(_WHEN)
    # evaluated up to sketches received at this time (µs since the epoch)
    last_sketch_id: Mapped[int] = mapped_column(sa.BigInteger)
    detail: Mapped[dict[str, Any]] = mapped_column(sa.JSON)  # the last evaluation's summary


class MonitorEventRow(Base):
    __tablename__ = "monitor_events"
    __table_args__ = (sa.Index("ix_monitor_events_model_at", "model", "at"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    model: Mapped[str] = mapped_column(_NAME)
    version: Mapped[int] = mapped_column(sa.Integer)
    cohort: Mapped[str] = mapped_column(_COHORT)
    at: Mapped[datetime] = mapped_column(_WHEN)
    event: Mapped[str] = mapped_column(sa.String(32))  # raised, cleared
    detail: Mapped[dict[str, Any]] = mapped_column(sa.JSON)  # drifted features, actions taken


class MonitorJobRow(Base):
    __tablename__ = "monitor_jobs"
    __table_args__ = (sa.Index("ix_monitor_jobs_kind_state", "kind", "state", "id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(32))  # "finetune"
    state: Mapped[str] = mapped_column(sa.String(16))  # queued, running, succeeded, failed
    model: Mapped[str] = mapped_column(_NAME)
    version: Mapped[int] = mapped_column(sa.Integer)
    cohort: Mapped[str] = mapped_column(_COHORT)
    # the alert event that asked for it (None: queued by an admin)
    event_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("monitor_events.id", ondelete="SET NULL"), nullable=True
    )
    reason: Mapped[str] = mapped_column(sa.Text)
    detail: Mapped[dict[str, Any]] = mapped_column(sa.JSON)  # the alert's summary
    created_by: Mapped[str] = mapped_column(_NAME)
    created_at: Mapped[datetime] = mapped_column(_WHEN)
    updated_at: Mapped[datetime] = mapped_column(_WHEN)
    worker: Mapped[str | None] = mapped_column(_NAME, nullable=True)
    claimed_at: Mapped[datetime | None] = mapped_column(_WHEN, nullable=True)
    attempts: Mapped[int] = mapped_column(sa.Integer)
    result: Mapped[dict[str, Any]] = mapped_column(sa.JSON)  # what the worker reported


MONITOR_TABLES = frozenset(
    t.__tablename__
    for t in (MonitorReferenceRow, MonitorSketchRow, MonitorEvaluationRow, MonitorAlertRow,
              MonitorEventRow, MonitorJobRow)
)
