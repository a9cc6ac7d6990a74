"""Auto-heal runs: one row per automatic run with its worker, lease and the heal steps done, and
a UNIQUE key on model and cohort while it runs (never two runs on one cohort at once).

Revision ID: 0013_autoheal_runs
Revises: 0012_federated
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013_autoheal_runs"
down_revision = "0012_federated"
branch_labels = None
depends_on = None

_NAME = sa.String(200)
_WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "autoheal_runs",
        sa.Column("job_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("model", _NAME, nullable=False),
        sa.Column("cohort", sa.String(300), nullable=False),
        sa.Column("active_key", sa.String(520), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("worker", _NAME, nullable=False),
        sa.Column("lease_until", _WHEN, nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("policy", sa.Text(), nullable=False),
        sa.Column("steps", sa.JSON(), nullable=False),
        sa.Column("result", sa.JSON(), nullable=False),
        sa.Column("started_at", _WHEN, nullable=False),
        sa.Column("updated_at", _WHEN, nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["monitor_jobs.id"],
                                name=op.f("fk_autoheal_runs_job_id_monitor_jobs"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("job_id", name=op.f("pk_autoheal_runs")),
        sa.UniqueConstraint("active_key", name=op.f("uq_autoheal_runs_active_key")),
    )
    op.create_index("ix_autoheal_runs_state", "autoheal_runs", ["state", "lease_until"])


def downgrade() -> None:
    op.drop_table("autoheal_runs")
