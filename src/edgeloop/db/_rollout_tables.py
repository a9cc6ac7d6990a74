"""The rollout tables, on the service layer's shared :class:`~edgeloop.db.Base`.

::

    fleet_rollouts ──< fleet_rollout_events   every transition with its reason (the timeline)
                   ├──< fleet_rollout_checks  each gate's values at each evaluation (the charts)
                   └──< fleet_rollout_devices each device given the new version under the
                                              rollout's controls, and how its install went

Created by the Alembic revisions ``0003_rollout`` and ``0009_rollout_controls`` (the
``controls`` column and ``fleet_rollout_devices``); a test checks that they agree. A rollout
row is changed only by a compare-and-set on ``revision`` (``_rollout_store``), so any number of
server processes may drive it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from edgeloop.db._engine import Base

__all__ = [
    "ROLLOUT_TABLES",
    "RolloutCheckRow",
    "RolloutDeviceRow",
    "RolloutEventRow",
    "RolloutRow",
]

_NAME = sa.String(200)
_WHEN = sa.DateTime(timezone=True)


class RolloutRow(Base):
    __tablename__ = "fleet_rollouts"
    id: Mapped[int] = mapped_column(primary_key=True)
    model: Mapped[str] = mapped_column(_NAME, index=True)
    from_version: Mapped[int] = mapped_column(sa.Integer)
    to_version: Mapped[int] = mapped_column(sa.Integer)
    stages: Mapped[list[Any]] = mapped_column(sa.JSON)  # percents, e.g. [1, 10, 50, 100]
    soak_s: Mapped[float] = mapped_column(sa.Float)
    gates: Mapped[list[Any]] = mapped_column(sa.JSON)  # gate texts
    cohort: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    options: Mapped[dict[str, Any]] = mapped_column(sa.JSON)  # GateOptions and timeouts
    # RolloutControls.to_dict(): rate, concurrency, window, failure thresholds (0008)
    controls: Mapped[dict[str, Any]] = mapped_column(sa.JSON, default=dict)
    salt: Mapped[str] = mapped_column(sa.String(64))
    state: Mapped[str] = mapped_column(sa.String(16), index=True)
    stage: Mapped[int] = mapped_column(sa.Integer)
    cut: Mapped[float] = mapped_column(sa.Float)  # devices hashing at or below are in the stage
    stage_devices: Mapped[int] = mapped_column(sa.Integer)
    reason: Mapped[str] = mapped_column(sa.Text)  # of the last transition
    created_by: Mapped[str] = mapped_column(_NAME)
    created_at: Mapped[datetime] = mapped_column(_WHEN)
    stage_started_at: Mapped[datetime] = mapped_column(_WHEN)
    soak_started_at: Mapped[datetime | None] = mapped_column(_WHEN, nullable=True)
    state_since: Mapped[datetime] = mapped_column(_WHEN)
    finished_at: Mapped[datetime | None] = mapped_column(_WHEN, nullable=True)
    revision: Mapped[int] = mapped_column(sa.Integer)  # compare-and-set


class RolloutEventRow(Base):
    __tablename__ = "fleet_rollout_events"
    id: Mapped[int] = mapped_column(primary_key=True)
    rollout_id: Mapped[int] = mapped_column(
        sa.ForeignKey("fleet_rollouts.id", ondelete="CASCADE"), index=True
    )
    at: Mapped[datetime] = mapped_column(_WHEN)
    kind: Mapped[str] = mapped_column(sa.String(32))
    from_state: Mapped[str | None] = mapped_column(sa.String(16), nullable=True)
    to_state: Mapped[str] = mapped_column(sa.String(16))
    stage: Mapped[int] = mapped_column(sa.Integer)
    reason: Mapped[str] = mapped_column(sa.Text)
    actor: Mapped[str] = mapped_column(_NAME)
    data: Mapped[dict[str, Any]] = mapped_column(sa.JSON)


class RolloutCheckRow(Base):
    __tablename__ = "fleet_rollout_checks"
    __table_args__ = (sa.Index("ix_fleet_rollout_checks_rollout_at", "rollout_id", "at"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    rollout_id: Mapped[int] = mapped_column(sa.ForeignKey("fleet_rollouts.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(_WHEN)
    stage: Mapped[int] = mapped_column(sa.Integer)
    gate: Mapped[str] = mapped_column(sa.String(500))
    status: Mapped[str] = mapped_column(sa.String(16))
    treatment: Mapped[float | None] = mapped_column(sa.Float, nullable=True)
    control: Mapped[float | None] = mapped_column(sa.Float, nullable=True)
    bound: Mapped[float | None] = mapped_column(sa.Float, nullable=True)
    result: Mapped[dict[str, Any]] = mapped_column(sa.JSON)


class RolloutDeviceRow(Base):
    """A device the director gave the rollout's version while controls were on: counted by
    the rate limit (``assigned_at``) and the concurrent downloads (``state``), and by the
    failure thresholds once its install failed or it fell back."""

    __tablename__ = "fleet_rollout_devices"
    __table_args__ = (sa.Index("ix_fleet_rollout_devices_rollout_at", "rollout_id", "assigned_at"),)
    rollout_id: Mapped[int] = mapped_column(
        sa.ForeignKey("fleet_rollouts.id", ondelete="CASCADE"), primary_key=True
    )
    device_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    stage: Mapped[int] = mapped_column(sa.Integer)
    assigned_at: Mapped[datetime] = mapped_column(_WHEN)
    state: Mapped[str] = mapped_column(sa.String(16))  # downloading, installed, failed
    finished_at: Mapped[datetime | None] = mapped_column(_WHEN, nullable=True)
    detail: Mapped[str | None] = mapped_column(sa.Text, nullable=True)


ROLLOUT_TABLES = frozenset(
    t.__tablename__ for t in (RolloutRow, RolloutEventRow, RolloutCheckRow, RolloutDeviceRow)
)
