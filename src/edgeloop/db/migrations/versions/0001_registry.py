"""Registry: blobs, models, versions, bundles, evaluations, lineage, aliases and their history.

Revision ID: 0001_registry
Revises: (none: the root of the service chain; 0002_fleet and 0003_rollout follow)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_registry"
down_revision = None
branch_labels = None
depends_on = None

_SHA = sa.String(64)
_NAME = sa.String(200)
_WHEN = sa.DateTime(timezone=True)


def _fk(table: str, column: str, target: str, ondelete: str | None = "CASCADE") -> sa.Constraint:
    ref_table, ref_col = target.split(".")
    return sa.ForeignKeyConstraint(
        [column], [target], name=op.f(f"fk_{table}_{column}_{ref_table}"), ondelete=ondelete
    )


def upgrade() -> None:
    op.create_table(
        "blobs",
        sa.Column("sha256", _SHA, nullable=False),
        sa.Column("length", sa.BigInteger(), nullable=False),
        sa.Column("media_type", sa.String(200), nullable=False),
        sa.Column("path", sa.String(300), nullable=False),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.PrimaryKeyConstraint("sha256", name=op.f("pk_blobs")),
    )
    op.create_table(
        "models",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", _NAME, nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.Column("created_by", _NAME, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_models")),
        sa.UniqueConstraint("name", name=op.f("uq_models_name")),
    )
    op.create_table(
        "model_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("model_sha256", _SHA, nullable=False),
        sa.Column("card_json", sa.Text(), nullable=True),
        sa.Column("card_sha256", _SHA, nullable=True),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.Column("created_by", _NAME, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_model_versions")),
        _fk("model_versions", "model_id", "models.id"),
        _fk("model_versions", "model_sha256", "blobs.sha256", None),
        sa.UniqueConstraint("model_id", "version", name=op.f("uq_model_versions_model_id_version")),
    )
    op.create_index(op.f("ix_model_versions_model_sha256"), "model_versions", ["model_sha256"])
    op.create_index(op.f("ix_model_versions_card_sha256"), "model_versions", ["card_sha256"])
    op.create_table(
        "bundles",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("variant", _NAME, nullable=False),
        sa.Column("sha256", _SHA, nullable=False),
        sa.Column("requirements", sa.JSON(), nullable=False),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.Column("created_by", _NAME, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bundles")),
        _fk("bundles", "version_id", "model_versions.id"),
        _fk("bundles", "sha256", "blobs.sha256", None),
        sa.UniqueConstraint("version_id", "variant", name=op.f("uq_bundles_version_id_variant")),
    )
    op.create_index(op.f("ix_bundles_sha256"), "bundles", ["sha256"])
    op.create_table(
        "evaluations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("metric", _NAME, nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("dataset", _NAME, nullable=True),
        sa.Column("dataset_sha256", _SHA, nullable=True),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.Column("created_by", _NAME, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_evaluations")),
        _fk("evaluations", "version_id", "model_versions.id"),
    )
    op.create_index(op.f("ix_evaluations_version_id"), "evaluations", ["version_id"])
    op.create_table(
        "lineage_refs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(64), nullable=False),
        sa.Column("sha256", _SHA, nullable=False),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("uri", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lineage_refs")),
        _fk("lineage_refs", "version_id", "model_versions.id"),
    )
    op.create_index(op.f("ix_lineage_refs_version_id"), "lineage_refs", ["version_id"])
    op.create_index(op.f("ix_lineage_refs_sha256"), "lineage_refs", ["sha256"])
    op.create_table(
        "aliases",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("name", _NAME, nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("updated_at", _WHEN, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_aliases")),
        _fk("aliases", "model_id", "models.id"),
        _fk("aliases", "version_id", "model_versions.id", None),
        sa.UniqueConstraint("model_id", "name", name=op.f("uq_aliases_model_id_name")),
    )
    op.create_index(op.f("ix_aliases_version_id"), "aliases", ["version_id"])
    op.create_table(
        "alias_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("alias", _NAME, nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("from_version", sa.Integer(), nullable=True),
        sa.Column("to_version", sa.Integer(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("actor", _NAME, nullable=False),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alias_events")),
        _fk("alias_events", "model_id", "models.id"),
    )
    op.create_index("ix_alias_events_model_alias", "alias_events", ["model_id", "alias"])


def downgrade() -> None:
    op.drop_index("ix_alias_events_model_alias", table_name="alias_events")
    op.drop_table("alias_events")
    op.drop_index(op.f("ix_aliases_version_id"), table_name="aliases")
    op.drop_table("aliases")
    op.drop_index(op.f("ix_lineage_refs_sha256"), table_name="lineage_refs")
    op.drop_index(op.f("ix_lineage_refs_version_id"), table_name="lineage_refs")
    op.drop_table("lineage_refs")
    op.drop_index(op.f("ix_evaluations_version_id"), table_name="evaluations")
    op.drop_table("evaluations")
    op.drop_index(op.f("ix_bundles_sha256"), table_name="bundles")
    op.drop_table("bundles")
    op.drop_index(op.f("ix_model_versions_card_sha256"), table_name="model_versions")
    op.drop_index(op.f("ix_model_versions_model_sha256"), table_name="model_versions")
    op.drop_table("model_versions")
    op.drop_table("models")
    op.drop_table("blobs")
