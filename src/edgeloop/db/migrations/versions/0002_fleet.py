"""Fleet: enrollment tokens, devices, nonces, telemetry reports, releases and their variants.

Revision ID: 0002_fleet
Revises: 0001_registry
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_fleet"
down_revision = "0001_registry"
branch_labels = None
depends_on = None

_SHA = sa.String(64)
_NAME = sa.String(200)
_WHEN = sa.DateTime(timezone=True)


def _fk(table: str, column: str, target: str) -> sa.Constraint:
    ref_table = target.split(".")[0]
    return sa.ForeignKeyConstraint(
        [column], [target], name=op.f(f"fk_{table}_{column}_{ref_table}"), ondelete="CASCADE"
    )


def upgrade() -> None:
    op.create_table(
        "fleet_enroll_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_sha256", _SHA, nullable=False),
        sa.Column("model", _NAME, nullable=True),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.Column("expires_at", _WHEN, nullable=False),
        sa.Column("uses_left", sa.Integer(), nullable=False),
        sa.Column("used_at", _WHEN, nullable=True),
        sa.Column("device_id", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fleet_enroll_tokens")),
        sa.UniqueConstraint("token_sha256", name=op.f("uq_fleet_enroll_tokens_token_sha256")),
    )
    op.create_table(
        "fleet_devices",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("signing_key", _SHA, nullable=False),
        sa.Column("encryption_key", _SHA, nullable=False),
        sa.Column("name", _NAME, nullable=True),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("model", _NAME, nullable=True),
        sa.Column("enrolled_at", _WHEN, nullable=False),
        sa.Column("last_seen", _WHEN, nullable=True),
        sa.Column("agent_version", sa.String(64), nullable=True),
        sa.Column("profile", sa.JSON(), nullable=True),
        sa.Column("installed", sa.JSON(), nullable=True),
        sa.Column("installed_version", sa.Integer(), nullable=True),
        sa.Column("known_good", sa.JSON(), nullable=True),
        sa.Column("health", sa.String(16), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("revoked", sa.Boolean(), nullable=False),
        sa.Column("revoked_at", _WHEN, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fleet_devices")),
        sa.UniqueConstraint("signing_key", name=op.f("uq_fleet_devices_signing_key")),
    )
    op.create_index(op.f("ix_fleet_devices_model"), "fleet_devices", ["model"])
    op.create_index(
        op.f("ix_fleet_devices_installed_version"), "fleet_devices", ["installed_version"]
    )
    op.create_table(
        "fleet_nonces",
        sa.Column("device_id", sa.String(64), nullable=False),
        sa.Column("nonce", sa.String(64), nullable=False),
        sa.Column("seen_at", _WHEN, nullable=False),
        sa.PrimaryKeyConstraint("device_id", "nonce", name=op.f("pk_fleet_nonces")),
        _fk("fleet_nonces", "device_id", "fleet_devices.id"),
    )
    op.create_index(op.f("ix_fleet_nonces_seen_at"), "fleet_nonces", ["seen_at"])
    op.create_table(
        "fleet_reports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("device_id", sa.String(64), nullable=False),
        sa.Column("received_at", _WHEN, nullable=False),
        sa.Column("model", _NAME, nullable=True),
        sa.Column("version", sa.Integer(), nullable=True),
        sa.Column("window_s", sa.Float(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("report", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fleet_reports")),
        _fk("fleet_reports", "device_id", "fleet_devices.id"),
    )
    op.create_index(
        "ix_fleet_reports_device_received", "fleet_reports", ["device_id", "received_at"]
    )
    op.create_table(
        "fleet_releases",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model", _NAME, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("published_at", _WHEN, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fleet_releases")),
        sa.UniqueConstraint("model", "version", name=op.f("uq_fleet_releases_model_version")),
    )
    op.create_table(
        "fleet_release_variants",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("release_id", sa.Integer(), nullable=False),
        sa.Column("variant", _NAME, nullable=False),
        sa.Column("target", sa.String(512), nullable=False),
        sa.Column("sha256", _SHA, nullable=False),
        sa.Column("length", sa.BigInteger(), nullable=False),
        sa.Column("requires", sa.JSON(), nullable=False),
        sa.Column("fleet_wrap", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fleet_release_variants")),
        _fk("fleet_release_variants", "release_id", "fleet_releases.id"),
        sa.UniqueConstraint(
            "release_id", "variant", name=op.f("uq_fleet_release_variants_release_id_variant")
        ),
        sa.UniqueConstraint("target", name=op.f("uq_fleet_release_variants_target")),
    )
    op.create_index(
        op.f("ix_fleet_release_variants_release_id"), "fleet_release_variants", ["release_id"]
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_fleet_release_variants_release_id"), "fleet_release_variants")
    op.drop_table("fleet_release_variants")
    op.drop_table("fleet_releases")
    op.drop_index("ix_fleet_reports_device_received", "fleet_reports")
    op.drop_table("fleet_reports")
    op.drop_index(op.f("ix_fleet_nonces_seen_at"), "fleet_nonces")
    op.drop_table("fleet_nonces")
    op.drop_index(op.f("ix_fleet_devices_installed_version"), "fleet_devices")
    op.drop_index(op.f("ix_fleet_devices_model"), "fleet_devices")
    op.drop_table("fleet_devices")
    op.drop_table("fleet_enroll_tokens")
