"""Rollouts: staged rollouts, their transitions (timeline) and gate checks (charts).

Revision ID: 0003_rollout
Revises: 0002_fleet
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_rollout"
down_revision = "0002_fleet"
branch_labels = None
depends_on = None

_NAME = sa.String(200)
_WHEN = sa.DateTime(timezone=True)


def _fk(table: str) -> sa.Constraint:
    return sa.ForeignKeyConstraint(
        ["rollout_id"],
        ["fleet_rollouts.id"],
        name=op.f(f"fk_{table}_rollout_id_fleet_rollouts"),
        ondelete="CASCADE",
    )


def upgrade() -> None:
    op.create_table(
        "fleet_rollouts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model", _NAME, nullable=False),
        sa.Column("from_version", sa.Integer(), nullable=False),
        sa.Column("to_version", sa.Integer(), nullable=False),
        sa.Column("stages", sa.JSON(), nullable=False),
        sa.Column("soak_s", sa.Float(), nullable=False),
        sa.Column("gates", sa.JSON(), nullable=False),
        sa.Column("cohort", sa.JSON(), nullable=False),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("salt", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("stage", sa.Integer(), nullable=False),
        sa.Column("cut", sa.Float(), nullable=False),
        sa.Column("stage_devices", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_by", _NAME, nullable=False),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.Column("stage_started_at", _WHEN, nullable=False),
        sa.Column("soak_started_at", _WHEN, nullable=True),
        sa.Column("state_since", _WHEN, nullable=False),
        sa.Column("finished_at", _WHEN, nullable=True),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fleet_rollouts")),
    )
    op.create_index(op.f("ix_fleet_rollouts_model"), "fleet_rollouts", ["model"])
    op.create_index(op.f("ix_fleet_rollouts_state"), "fleet_rollouts", ["state"])
    op.create_table(
        "fleet_rollout_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("rollout_id", sa.Integer(), nullable=False),
        sa.Column("at", _WHEN, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("from_state", sa.String(16), nullable=True),
        sa.Column("to_state", sa.String(16), nullable=False),
        sa.Column("stage", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("actor", _NAME, nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        _fk("fleet_rollout_events"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fleet_rollout_events")),
    )
    op.create_index(
        op.f("ix_fleet_rollout_events_rollout_id"), "fleet_rollout_events", ["rollout_id"]
    )
    op.create_table(
        "fleet_rollout_checks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("rollout_id", sa.Integer(), nullable=False),
        sa.Column("at", _WHEN, nullable=False),
        sa.Column("stage", sa.Integer(), nullable=False),
        sa.Column("gate", sa.String(500), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("treatment", sa.Float(), nullable=True),
        sa.Column("control", sa.Float(), nullable=True),
        sa.Column("bound", sa.Float(), nullable=True),
        sa.Column("result", sa.JSON(), nullable=False),
        _fk("fleet_rollout_checks"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fleet_rollout_checks")),
    )
    op.create_index(
        "ix_fleet_rollout_checks_rollout_at", "fleet_rollout_checks", ["rollout_id", "at"]
    )


def downgrade() -> None:
    op.drop_table("fleet_rollout_checks")
    op.drop_table("fleet_rollout_events")
    op.drop_table("fleet_rollouts")
