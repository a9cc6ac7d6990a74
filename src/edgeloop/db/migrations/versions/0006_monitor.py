"""Monitoring: per-version references, device sketches, evaluations, alerts and their events.

Revision ID: 0006_monitor
Revises: 0004_alias_revert
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_monitor"
down_revision = "0005_dashboard_sessions"
branch_labels = None
depends_on = None

_NAME = sa.String(200)
_WHEN = sa.DateTime(timezone=True)
_COHORT = sa.String(300)


def upgrade() -> None:
    op.create_table(
        "monitor_references",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model", _NAME, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("reference", sa.Text(), nullable=False),
        sa.Column("origin", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_by", _NAME, nullable=False),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_monitor_references")),
    )
    op.create_index("ix_monitor_references_model_version", "monitor_references",
                    ["model", "version"])
    op.create_table(
        "monitor_sketches",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("device_id", sa.String(64), nullable=False),
        sa.Column("model", _NAME, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("reference_sha256", sa.String(64), nullable=False),
        sa.Column("window", sa.BigInteger(), nullable=False),
        sa.Column("received_at", _WHEN, nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("sketch", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["device_id"], ["fleet_devices.id"],
                                name=op.f("fk_monitor_sketches_device_id_fleet_devices"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_monitor_sketches")),
    )
    op.create_index("ix_monitor_sketches_model_version_id", "monitor_sketches",
                    ["model", "version", "id"])
    op.create_index("ix_monitor_sketches_device_received", "monitor_sketches",
                    ["device_id", "received_at"])
    op.create_table(
        "monitor_evaluations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model", _NAME, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("cohort", _COHORT, nullable=False),
        sa.Column("at", _WHEN, nullable=False),
        sa.Column("alarm", sa.Boolean(), nullable=True),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("report", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_monitor_evaluations")),
    )
    op.create_index("ix_monitor_evaluations_model_version_at", "monitor_evaluations",
                    ["model", "version", "at"])
    op.create_table(
        "monitor_alerts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model", _NAME, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("cohort", _COHORT, nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("bad", sa.Integer(), nullable=False),
        sa.Column("good", sa.Integer(), nullable=False),
        sa.Column("since", _WHEN, nullable=True),
        sa.Column("updated_at", _WHEN, nullable=False),
        sa.Column("last_sketch_id", sa.BigInteger(), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_monitor_alerts")),
        sa.UniqueConstraint("model", "version", "cohort",
                            name=op.f("uq_monitor_alerts_model_version_cohort")),
    )
    op.create_table(
        "monitor_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model", _NAME, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("cohort", _COHORT, nullable=False),
        sa.Column("at", _WHEN, nullable=False),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_monitor_events")),
    )
    op.create_index("ix_monitor_events_model_at", "monitor_events", ["model", "at"])


def downgrade() -> None:
    for table in ("monitor_events", "monitor_alerts", "monitor_evaluations",
                  "monitor_sketches", "monitor_references"):
        op.drop_table(table)
