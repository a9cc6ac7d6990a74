"""Alias history: a move of an alias to an older version is a ``revert`` (was ``rollback``).

"Rollback" now means one thing in the service layer, a rollout's state machine sending its
devices back to the version it started from; an alias moved back is a revert. Data only, no
schema change.

Revision ID: 0004_alias_revert
Revises: 0003_rollout
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_alias_revert"
down_revision = "0003_rollout"
branch_labels = None
depends_on = None

_EVENTS = sa.table("alias_events", sa.column("action", sa.String(32)))


def _rename(old: str, new: str) -> None:
    op.execute(_EVENTS.update().where(_EVENTS.c.action == old).values(action=new))


def upgrade() -> None:
    _rename("rollback", "revert")


def downgrade() -> None:
    _rename("revert", "rollback")
