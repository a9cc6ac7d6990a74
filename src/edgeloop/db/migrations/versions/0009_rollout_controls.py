"""Rollout controls: the operator's limits stored with each rollout (``controls``: rate,
concurrent downloads, maintenance window, failure thresholds) and the devices given the new
version under them with how their install went (``fleet_rollout_devices``).

Revision ID: 0009_rollout_controls
Revises: 0008_monitor_jobs
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_rollout_controls"
down_revision = "0008_monitor_jobs"
branch_labels = None
depends_on = None

_WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("fleet_rollouts") as batch:
        batch.add_column(
            sa.Column("controls", sa.JSON(), nullable=False, server_default=sa.text("'{}'"))
        )
    op.create_table(
        "fleet_rollout_devices",
        sa.Column("rollout_id", sa.Integer(), nullable=False),
        sa.Column("device_id", sa.String(64), nullable=False),
        sa.Column("stage", sa.Integer(), nullable=False),
        sa.Column("assigned_at", _WHEN, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("finished_at", _WHEN, nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["rollout_id"],
            ["fleet_rollouts.id"],
            name=op.f("fk_fleet_rollout_devices_rollout_id_fleet_rollouts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("rollout_id", "device_id", name=op.f("pk_fleet_rollout_devices")),
    )
    op.create_index(
        "ix_fleet_rollout_devices_rollout_at",
        "fleet_rollout_devices",
        ["rollout_id", "assigned_at"],
    )


def downgrade() -> None:
    op.drop_index("ix_fleet_rollout_devices_rollout_at", table_name="fleet_rollout_devices")
    op.drop_table("fleet_rollout_devices")
    with op.batch_alter_table("fleet_rollouts") as batch:
        batch.drop_column("controls")
