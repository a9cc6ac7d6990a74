"""Auto-heal: the kill switch (one row every server process reads) and the log of automatic
actions.

Revision ID: 0011_autoheal
Revises: 0010_fleet_generation
"""

from __future__ import annotations

from datetime import datetime, timezone

import sqlalchemy as sa
from alembic import op

revision = "0011_autoheal"
down_revision = "0010_fleet_generation"
branch_labels = None
depends_on = None

_NAME = sa.String(200)
_WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    state = op.create_table(
        "autoheal_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("actor", _NAME, nullable=False),
        sa.Column("updated_at", _WHEN, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_autoheal_state")),
    )
    op.bulk_insert(state, [{"id": 1, "paused": False, "reason": "", "actor": "migration",
                            "updated_at": datetime.now(timezone.utc)}])
    op.create_table(
        "autoheal_actions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", _WHEN, nullable=False),
        sa.Column("actor", _NAME, nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("model", _NAME, nullable=True),
        sa.Column("cohort", sa.String(300), nullable=True),
        sa.Column("job_id", sa.Integer(), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_autoheal_actions")),
    )
    op.create_index("ix_autoheal_actions_model_at", "autoheal_actions", ["model", "at"])


def downgrade() -> None:
    op.drop_table("autoheal_actions")
    op.drop_table("autoheal_state")
