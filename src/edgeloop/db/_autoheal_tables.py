"""The auto-heal tables: the kill switch every server process reads, and the log of automatic
actions (docs/autoheal.md).

::

    autoheal_state     one row (id 1): whether auto-heal is paused, by whom, why, since when
    autoheal_actions   every automatic action and every change of the kill switch: when, who
                       (a server process, a person), what, for which model, cohort and job
    autoheal_runs      one row per automatic run (a claimed ``finetune`` job): its worker and
                       lease, the heal steps done with their outputs (registered version,
                       release, rollout id), so a worker that died is resumed from its last step;
                       ``active_key`` (model and cohort while running, NULL after) is UNIQUE, so
                       the database itself refuses a second run on one cohort at once

Created by the Alembic revisions ``0011_autoheal`` and ``0013_autoheal_runs``; a test checks
that the two agree.
In the database, not in process memory, so every server process of a fleet shares them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from edgeloop.db._engine import Base

__all__ = ["AUTOHEAL_TABLES", "AutohealActionRow", "AutohealRunRow", "AutohealStateRow"]

_WHEN = sa.DateTime(timezone=True)
_NAME = sa.String(200)


class AutohealStateRow(Base):
    __tablename__ = "autoheal_state"

    id: Mapped[int] = mapped_column(primary_key=True)
    paused: Mapped[bool] = mapped_column(sa.Boolean())
    reason: Mapped[str] = mapped_column(sa.Text())
    actor: Mapped[str] = mapped_column(_NAME)
    updated_at: Mapped[datetime] = mapped_column(_WHEN)


class AutohealActionRow(Base):
    __tablename__ = "autoheal_actions"
    __table_args__ = (sa.Index("ix_autoheal_actions_model_at", "model", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(_WHEN)
    actor: Mapped[str] = mapped_column(_NAME)
    action: Mapped[str] = mapped_column(sa.String(32))
    model: Mapped[str | None] = mapped_column(_NAME, nullable=True)
    cohort: Mapped[str | None] = mapped_column(sa.String(300), nullable=True)
    job_id: Mapped[int | None] = mapped_column(sa.Integer(), nullable=True)
    detail: Mapped[dict[str, Any]] = mapped_column(sa.JSON())


class AutohealRunRow(Base):
    __tablename__ = "autoheal_runs"
    __table_args__ = (sa.Index("ix_autoheal_runs_state", "state", "lease_until"),)

    job_id: Mapped[int] = mapped_column(
        sa.ForeignKey("monitor_jobs.id", ondelete="CASCADE"), primary_key=True,
        autoincrement=False)
    model: Mapped[str] = mapped_column(_NAME)
    cohort: Mapped[str] = mapped_column(sa.String(300))
    # "model\x1fcohort" while the run is running, NULL once it ended: UNIQUE
    active_key: Mapped[str | None] = mapped_column(sa.String(520), nullable=True, unique=True)
    state: Mapped[str] = mapped_column(sa.String(16))  # running, succeeded, failed
    worker: Mapped[str] = mapped_column(_NAME)
    lease_until: Mapped[datetime] = mapped_column(_WHEN)
    attempts: Mapped[int] = mapped_column(sa.Integer())
    policy: Mapped[str] = mapped_column(sa.Text())  # the policy file that started it
    steps: Mapped[dict[str, Any]] = mapped_column(sa.JSON())  # step -> its recorded output
    result: Mapped[dict[str, Any]] = mapped_column(sa.JSON())
    started_at: Mapped[datetime] = mapped_column(_WHEN)
    updated_at: Mapped[datetime] = mapped_column(_WHEN)


AUTOHEAL_TABLES = frozenset(t.__tablename__
                            for t in (AutohealStateRow, AutohealActionRow, AutohealRunRow))
