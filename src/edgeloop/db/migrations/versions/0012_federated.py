"""Federated runs on real agents: the devices' Flower node key bindings and the open runs.

Revision ID: 0012_federated
Revises: 0011_autoheal
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012_federated"
down_revision = "0011_autoheal"
branch_labels = None
depends_on = None

_WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "fleet_fl_nodes",
        sa.Column("device_id", sa.String(64), nullable=False),
        sa.Column("binding", sa.JSON(), nullable=False),
        sa.Column("updated_at", _WHEN, nullable=False),
        sa.PrimaryKeyConstraint("device_id", name=op.f("pk_fleet_fl_nodes")),
    )
    op.create_table(
        "fleet_fl_runs",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("superlink", sa.String(300), nullable=False),
        sa.Column("cohort", sa.JSON(), nullable=False),
        sa.Column("opened_at", _WHEN, nullable=False),
        sa.Column("closed_at", _WHEN, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fleet_fl_runs")),
    )
    op.create_index(op.f("ix_fleet_fl_runs_closed_at"), "fleet_fl_runs", ["closed_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_fleet_fl_runs_closed_at"), table_name="fleet_fl_runs")
    op.drop_table("fleet_fl_runs")
    op.drop_table("fleet_fl_nodes")
