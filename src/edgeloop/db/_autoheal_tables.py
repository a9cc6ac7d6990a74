"""The auto-heal tables: the kill switch every server process reads, and the log of automatic
actions (docs/autoheal.md).

::

    autoheal_state     one row (id 1): whether auto-heal is paused, by whom, why, since when
    autoheal_actions   every automatic action and every change of the kill switch: when, who
                       (a server process, a person), what, for which model, cohort and job

Created by the Alembic revision ``0011_autoheal``; a test checks that the two agree.
In the database, not in process memory, so every server process of a fleet shares them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from edgeloop.db._engine import Base

__all__ = ["AUTOHEAL_TABLES", "AutohealActionRow", "AutohealStateRow"]

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


AUTOHEAL_TABLES = frozenset(t.__tablename__ for t in (AutohealStateRow, AutohealActionRow))
