"""The dashboard's tables: server-side sessions and failed sign-ins (for throttling).

::

    fleet_dashboard_sessions   one row per signed-in browser: the sha256 of its cookie (never
                               the cookie), its CSRF value and when it expires; sign-out deletes it
    fleet_login_failures       one row per failed sign-in, by client address: a client with too
                               many recent failures is refused (429) before its token is checked

Created by the Alembic revision ``0005_dashboard_sessions``; a test checks that the two agree.
In the database, not in process memory, so every server process of a fleet shares them.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from edgeloop.db._engine import Base

__all__ = ["DASHBOARD_TABLES", "DashboardSessionRow", "LoginFailureRow"]

_WHEN = sa.DateTime(timezone=True)


class DashboardSessionRow(Base):
    __tablename__ = "fleet_dashboard_sessions"
    token_sha256: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    csrf: Mapped[str] = mapped_column(sa.String(64))
    created_at: Mapped[datetime] = mapped_column(_WHEN)
    expires_at: Mapped[datetime] = mapped_column(_WHEN, index=True)


class LoginFailureRow(Base):
    __tablename__ = "fleet_login_failures"
    id: Mapped[int] = mapped_column(primary_key=True)
    client: Mapped[str] = mapped_column(sa.String(64), index=True)
    at: Mapped[datetime] = mapped_column(_WHEN)


DASHBOARD_TABLES = frozenset(t.__tablename__ for t in (DashboardSessionRow, LoginFailureRow))
