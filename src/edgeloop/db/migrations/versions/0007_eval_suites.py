"""Evaluation suites: per model, held-out data (a registry blob) that every pushed version is
scored on, an optional segment key, the metric and the regression budget ``rollout start``
holds a version to.

Revision ID: 0007_eval_suites
Revises: 0006_monitor
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_eval_suites"
down_revision = "0006_monitor"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "eval_suites",
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("data_sha256", sa.String(64), nullable=False),
        sa.Column("segment_key", sa.String(200), nullable=True),
        sa.Column("metric", sa.String(200), nullable=False),
        sa.Column("max_drop", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(200), nullable=False),
        sa.ForeignKeyConstraint(
            ["model_id"],
            ["models.id"],
            name=op.f("fk_eval_suites_model_id_models"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["data_sha256"], ["blobs.sha256"], name=op.f("fk_eval_suites_data_sha256_blobs")
        ),
        sa.PrimaryKeyConstraint("model_id", name=op.f("pk_eval_suites")),
    )
    op.create_index(op.f("ix_eval_suites_data_sha256"), "eval_suites", ["data_sha256"])


def downgrade() -> None:
    op.drop_index(op.f("ix_eval_suites_data_sha256"), table_name="eval_suites")
    op.drop_table("eval_suites")
