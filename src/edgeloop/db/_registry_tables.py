"""The registry's tables (ORM rows stay inside the service layer; APIs return dataclasses).

::

    blobs            content-addressed files under <data>/blobs/sha256/ab/abcd...
    models ──< model_versions ──< bundles        (per-device variants of one version)
                     │        ├──< evaluations    (metric, value, dataset sha256, who, when)
                     │        └──< lineage_refs   (the ModelCard's lineage, indexed by sha256)
                     └──< aliases                 (name -> version, one row per alias)
    models ──< alias_events                       (every move of an alias: who, when, why)
    models ──  eval_suites                        (held-out data blob, segment key, budget)

The schema is created by the Alembic revisions ``0001_registry`` (``eval_suites``:
``0007_eval_suites``); a test checks that the two agree.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from edgeloop.db._engine import Base

__all__ = [
    "AliasEventRow",
    "AliasRow",
    "BlobRow",
    "BundleRow",
    "EvalSuiteRow",
    "EvaluationRow",
    "LineageRow",
    "ModelRow",
    "REGISTRY_TABLES",
    "VersionRow",
]

_SHA = sa.String(64)
_NAME = sa.String(200)
_WHEN = sa.DateTime(timezone=True)


class BlobRow(Base):
    __tablename__ = "blobs"
    sha256: Mapped[str] = mapped_column(_SHA, primary_key=True)
    length: Mapped[int] = mapped_column(sa.BigInteger)
    media_type: Mapped[str] = mapped_column(sa.String(200))
    path: Mapped[str] = mapped_column(sa.String(300))  # relative to the data dir
    created_at: Mapped[datetime] = mapped_column(_WHEN)


class ModelRow(Base):
    __tablename__ = "models"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(_NAME, unique=True)
    description: Mapped[str] = mapped_column(sa.Text, default="")
    created_at: Mapped[datetime] = mapped_column(_WHEN)
    created_by: Mapped[str] = mapped_column(_NAME)


class VersionRow(Base):
    __tablename__ = "model_versions"
    __table_args__ = (sa.UniqueConstraint("model_id", "version"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    model_id: Mapped[int] = mapped_column(sa.ForeignKey("models.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(sa.Integer)
    model_sha256: Mapped[str] = mapped_column(sa.ForeignKey("blobs.sha256"), index=True)
    card_json: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    card_sha256: Mapped[str | None] = mapped_column(_SHA, nullable=True, index=True)
    description: Mapped[str] = mapped_column(sa.Text, default="")
    created_at: Mapped[datetime] = mapped_column(_WHEN)
    created_by: Mapped[str] = mapped_column(_NAME)


class BundleRow(Base):
    __tablename__ = "bundles"
    __table_args__ = (sa.UniqueConstraint("version_id", "variant"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    version_id: Mapped[int] = mapped_column(sa.ForeignKey("model_versions.id", ondelete="CASCADE"))
    variant: Mapped[str] = mapped_column(_NAME)
    sha256: Mapped[str] = mapped_column(sa.ForeignKey("blobs.sha256"), index=True)
    requirements: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    created_at: Mapped[datetime] = mapped_column(_WHEN)
    created_by: Mapped[str] = mapped_column(_NAME)


class EvaluationRow(Base):
    __tablename__ = "evaluations"
    id: Mapped[int] = mapped_column(primary_key=True)
    version_id: Mapped[int] = mapped_column(
        sa.ForeignKey("model_versions.id", ondelete="CASCADE"), index=True
    )
    metric: Mapped[str] = mapped_column(_NAME)
    value: Mapped[float] = mapped_column(sa.Float)
    dataset: Mapped[str | None] = mapped_column(_NAME, nullable=True)
    dataset_sha256: Mapped[str | None] = mapped_column(_SHA, nullable=True)
    created_at: Mapped[datetime] = mapped_column(_WHEN)
    created_by: Mapped[str] = mapped_column(_NAME)


class LineageRow(Base):
    __tablename__ = "lineage_refs"
    id: Mapped[int] = mapped_column(primary_key=True)
    version_id: Mapped[int] = mapped_column(
        sa.ForeignKey("model_versions.id", ondelete="CASCADE"), index=True
    )
    position: Mapped[int] = mapped_column(sa.Integer)
    role: Mapped[str] = mapped_column(sa.String(64))
    sha256: Mapped[str] = mapped_column(_SHA, index=True)
    name: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    uri: Mapped[str | None] = mapped_column(sa.Text, nullable=True)


class AliasRow(Base):
    __tablename__ = "aliases"
    __table_args__ = (sa.UniqueConstraint("model_id", "name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    model_id: Mapped[int] = mapped_column(sa.ForeignKey("models.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(_NAME)
    version_id: Mapped[int] = mapped_column(sa.ForeignKey("model_versions.id"), index=True)
    updated_at: Mapped[datetime] = mapped_column(_WHEN)


class AliasEventRow(Base):
    __tablename__ = "alias_events"
    __table_args__ = (sa.Index("ix_alias_events_model_alias", "model_id", "alias"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    model_id: Mapped[int] = mapped_column(sa.ForeignKey("models.id", ondelete="CASCADE"))
    alias: Mapped[str] = mapped_column(_NAME)
    action: Mapped[str] = mapped_column(sa.String(32))  # set, revert, remove
    from_version: Mapped[int | None] = mapped_column(sa.Integer, nullable=True)
    to_version: Mapped[int | None] = mapped_column(sa.Integer, nullable=True)
    reason: Mapped[str] = mapped_column(sa.Text, default="")
    actor: Mapped[str] = mapped_column(_NAME)
    created_at: Mapped[datetime] = mapped_column(_WHEN)


class EvalSuiteRow(Base):
    """A model's evaluation suite: held-out data every pushed version is scored on."""

    __tablename__ = "eval_suites"
    model_id: Mapped[int] = mapped_column(
        sa.ForeignKey("models.id", ondelete="CASCADE"), primary_key=True
    )
    data_sha256: Mapped[str] = mapped_column(sa.ForeignKey("blobs.sha256"), index=True)
    segment_key: Mapped[str | None] = mapped_column(_NAME, nullable=True)
    metric: Mapped[str] = mapped_column(_NAME)
    max_drop: Mapped[float] = mapped_column(sa.Float)
    updated_at: Mapped[datetime] = mapped_column(_WHEN)
    updated_by: Mapped[str] = mapped_column(_NAME)


REGISTRY_TABLES = frozenset(
    t.__tablename__
    for t in (
        BlobRow,
        ModelRow,
        VersionRow,
        BundleRow,
        EvaluationRow,
        LineageRow,
        AliasRow,
        AliasEventRow,
        EvalSuiteRow,
    )
)
