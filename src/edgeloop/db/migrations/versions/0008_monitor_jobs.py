"""Monitoring jobs: work a raised alert asks for (a fine-tuning job for the alerting model,
version and cohort), claimed and finished by a worker through the admin API.

Revision ID: 0008_monitor_jobs
Revises: 0007_eval_suites
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_monitor_jobs"
down_revision = "0007_eval_suites"
branch_labels = None
depends_on = None

_NAME = sa.String(200)
_WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "monitor_jobs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("model", _NAME, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("cohort", sa.String(300), nullable=False),
        sa.Column("event_id", sa.Integer(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("created_by", _NAME, nullable=False),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.Column("updated_at", _WHEN, nullable=False),
        sa.Column("worker", _NAME, nullable=True),
        sa.Column("claimed_at", _WHEN, nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("result", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["event_id"], ["monitor_events.id"],
                                name=op.f("fk_monitor_jobs_event_id_monitor_events"),
                                ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_monitor_jobs")),
    )
    op.create_index("ix_monitor_jobs_kind_state", "monitor_jobs", ["kind", "state", "id"])


def downgrade() -> None:
    op.drop_table("monitor_jobs")
