"""The federated tables: the devices' Flower node keys and the deployed runs they may join
(docs/federated.md).

::

    fleet_fl_nodes   one row a device: its signed node key binding (checked against its enrolled
                     key when it arrived), when it arrived
    fleet_fl_runs    a deployed run (``edgeloop fl start``): the SuperLink's address the devices
                     connect to, the cohort (labels a device must carry), opened, closed

Created by the Alembic revision ``0012_federated``; a test checks that the two agree.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from edgeloop.db._engine import Base

__all__ = ["FEDERATED_TABLES", "FederatedNodeRow", "FederatedRunRow"]

_WHEN = sa.DateTime(timezone=True)


class FederatedNodeRow(Base):
    __tablename__ = "fleet_fl_nodes"

    device_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    binding: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    updated_at: Mapped[datetime] = mapped_column(_WHEN)


class FederatedRunRow(Base):
    __tablename__ = "fleet_fl_runs"

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    superlink: Mapped[str] = mapped_column(sa.String(300))
    cohort: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    opened_at: Mapped[datetime] = mapped_column(_WHEN)
    closed_at: Mapped[datetime | None] = mapped_column(_WHEN, nullable=True, index=True)


FEDERATED_TABLES = frozenset({"fleet_fl_nodes", "fleet_fl_runs"})
