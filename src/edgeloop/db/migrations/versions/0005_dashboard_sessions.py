"""Dashboard sessions kept on the server (expiry, sign-out) and failed sign-ins (throttling);
each device's reported agent build (the sha256 of its installed files).

Revision ID: 0005_dashboard_sessions
Revises: 0004_alias_revert
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_dashboard_sessions"
down_revision = "0004_alias_revert"
branch_labels = None
depends_on = None

_WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("fleet_devices") as batch:
        batch.add_column(sa.Column("agent_build", sa.String(64), nullable=True))
    op.create_table(
        "fleet_dashboard_sessions",
        sa.Column("token_sha256", sa.String(64), nullable=False),
        sa.Column("csrf", sa.String(64), nullable=False),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.Column("expires_at", _WHEN, nullable=False),
        sa.PrimaryKeyConstraint("token_sha256", name=op.f("pk_fleet_dashboard_sessions")),
    )
    op.create_index(
        op.f("ix_fleet_dashboard_sessions_expires_at"),
        "fleet_dashboard_sessions",
        ["expires_at"],
    )
    op.create_table(
        "fleet_login_failures",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("client", sa.String(64), nullable=False),
        sa.Column("at", _WHEN, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fleet_login_failures")),
    )
    op.create_index(op.f("ix_fleet_login_failures_client"), "fleet_login_failures", ["client"])


def downgrade() -> None:
    op.drop_index(op.f("ix_fleet_login_failures_client"), table_name="fleet_login_failures")
    op.drop_table("fleet_login_failures")
    op.drop_index(
        op.f("ix_fleet_dashboard_sessions_expires_at"), table_name="fleet_dashboard_sessions"
    )
    op.drop_table("fleet_dashboard_sessions")
    with op.batch_alter_table("fleet_devices") as batch:
        batch.drop_column("agent_build")
