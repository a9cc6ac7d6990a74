"""Registry operations on an open :class:`~sqlalchemy.orm.Session`: values in, dataclasses out.

The caller owns the transaction (see :func:`edgeloop.db.write_session`); nothing here
touches files. :class:`edgeloop.registry.Registry` puts the blobs and calls these.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from edgeloop.artifacts import ModelCard
from edgeloop.db import (
    AliasRow,
    BlobRow,
    BundleRow,
    EvaluationRow,
    LineageRow,
    ModelRow,
    VersionRow,
    utcnow,
)
from edgeloop.errors import RegistryError
from edgeloop.registry._types import (
    BlobInfo,
    BundleInfo,
    Evaluation,
    ModelInfo,
    VersionInfo,
    check_name,
    check_sha256,
)

__all__ = [
    "utc",
    "add_bundle",
    "add_evaluation",
    "create_version",
    "ensure_blob",
    "find_versions",
    "get_model",
    "get_version",
    "list_models",
    "list_versions",
    "model_row",
    "resolve",
    "version_info",
    "version_row",
]


MAX_VERSION = 2**31 - 1  # a 32-bit INTEGER column on every engine


def utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything the registry stores is UTC."""
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def ensure_blob(session: Session, blob: BlobInfo) -> None:
    """Record a stored blob (once per hash: content-addressed, so re-pushes dedupe)."""
    if session.get(BlobRow, blob.sha256) is None:
        session.add(
            BlobRow(
                sha256=blob.sha256,
                length=blob.length,
                media_type=blob.media_type,
                path=blob.path,
                created_at=utcnow(),
            )
        )
        session.flush()


def _blob(session: Session, sha256: str) -> BlobInfo:
    row = session.get(BlobRow, sha256)
    if row is None:
        raise RegistryError(f"blob {sha256} is not in the registry")
    return BlobInfo(row.sha256, row.length, row.media_type, row.path)


def model_row(session: Session, name: str) -> ModelRow:
    row = session.scalars(sa.select(ModelRow).where(ModelRow.name == name)).one_or_none()
    if row is None:
        known = session.scalars(sa.select(ModelRow.name).order_by(ModelRow.name).limit(20)).all()
        hint = f"; known models: {', '.join(known)}" if known else "; the registry is empty"
        raise RegistryError(f"unknown model {name!r}{hint}")
    return row


def _versions_of(session: Session, model: ModelRow) -> list[int]:
    stmt = sa.select(VersionRow.version).where(VersionRow.model_id == model.id)
    return sorted(session.scalars(stmt.order_by(VersionRow.version)).all())


def version_row(session: Session, name: str, version: int) -> tuple[ModelRow, VersionRow]:
    model = model_row(session, name)
    row = session.scalars(
        sa.select(VersionRow).where(VersionRow.model_id == model.id, VersionRow.version == version)
    ).one_or_none()
    if row is None:
        have = _versions_of(session, model)
        known = f"versions {', '.join(map(str, have))}" if have else "no versions"
        raise RegistryError(f"model {name!r} has no version {version} (it has {known})")
    return model, row


def create_version(
    session: Session,
    name: str,
    artifact: BlobInfo,
    *,
    card: ModelCard | None,
    version: int | None,
    description: str,
    actor: str,
) -> VersionInfo:
    """Add the next version of ``name`` (creating the model), or exactly ``version``.

    Versions only go up: an explicit ``version`` at or below the newest one is refused.
    """
    check_name(name, "model name")
    if card is not None and card.sha256.lower() != artifact.sha256:
        raise RegistryError(
            f"model card for {card.name!r} describes sha256 {card.sha256}, "
            f"but the model file pushed has sha256 {artifact.sha256}"
        )
    ensure_blob(session, artifact)
    now = utcnow()
    model = session.scalars(
        sa.select(ModelRow).where(ModelRow.name == name).with_for_update()
    ).one_or_none()
    if model is None:
        model = ModelRow(name=name, description=description, created_at=now, created_by=actor)
        session.add(model)
        session.flush()
    newest = session.scalar(
        sa.select(sa.func.max(VersionRow.version)).where(VersionRow.model_id == model.id)
    )
    if version is None:
        version = (newest or 0) + 1
    elif isinstance(version, bool) or not 1 <= version <= MAX_VERSION:
        raise RegistryError(
            f"version of {name!r} must be an integer from 1 to {MAX_VERSION}, got {version!r}"
        )
    elif newest is not None and version <= newest:
        raise RegistryError(
            f"version {version} of {name!r} refused: versions only go up and the newest is "
            f"{newest} (push {newest + 1} or higher)"
        )
    for ref in card.lineage if card is not None else ():
        check_sha256(ref.sha256, f"lineage ref {ref.role!r} of the card for {name!r}")
    card_json = card.to_json(indent=None) if card is not None else None
    row = VersionRow(
        model_id=model.id,
        version=version,
        model_sha256=artifact.sha256,
        card_json=card_json,
        card_sha256=card.digest() if card is not None else None,
        description=description,
        created_at=now,
        created_by=actor,
    )
    session.add(row)
    session.flush()
    for i, ref in enumerate(card.lineage if card is not None else ()):
        session.add(
            LineageRow(
                version_id=row.id,
                position=i,
                role=ref.role,
                sha256=ref.sha256.lower(),
                name=ref.name,
                uri=ref.uri,
            )
        )
    session.flush()
    return version_info(session, model, row)


def add_bundle(
    session: Session,
    name: str,
    version: int,
    blob: BlobInfo,
    *,
    variant: str,
    requirements: Mapping[str, Any],
    actor: str,
) -> BundleInfo:
    check_name(variant, "bundle variant")
    try:
        reqs = json.loads(json.dumps(dict(requirements)))
    except (TypeError, ValueError) as e:
        raise RegistryError(f"requirements of variant {variant!r} are not JSON: {e}") from e
    model, row = version_row(session, name, version)
    taken = session.scalars(
        sa.select(BundleRow).where(BundleRow.version_id == row.id, BundleRow.variant == variant)
    ).one_or_none()
    if taken is not None:
        raise RegistryError(
            f"{name}@{version} already has a bundle variant {variant!r} "
            f"(sha256 {taken.sha256}); push a new version to change it"
        )
    ensure_blob(session, blob)
    b = BundleRow(
        version_id=row.id,
        variant=variant,
        sha256=blob.sha256,
        requirements=reqs,
        created_at=utcnow(),
        created_by=actor,
    )
    session.add(b)
    session.flush()
    return _bundle_info(session, model, row, b)


def _bundle_info(session: Session, model: ModelRow, v: VersionRow, b: BundleRow) -> BundleInfo:
    blob = _blob(session, b.sha256)
    return BundleInfo(
        model=model.name,
        version=v.version,
        variant=b.variant,
        sha256=b.sha256,
        length=blob.length,
        path=blob.path,
        requirements=dict(b.requirements),
        created_at=utc(b.created_at),
        created_by=b.created_by,
    )


def add_evaluation(
    session: Session,
    name: str,
    version: int,
    *,
    metric: str,
    value: float,
    dataset: str | None,
    dataset_sha256: str | None,
    actor: str,
) -> Evaluation:
    check_name(metric, "metric name")
    try:
        value = float(value)
    except (TypeError, ValueError) as e:
        raise RegistryError(f"value of metric {metric!r} must be a number, got {value!r}") from e
    if not math.isfinite(value):
        raise RegistryError(f"value of metric {metric!r} must be finite, got {value}")
    if dataset_sha256 is not None:
        dataset_sha256 = check_sha256(dataset_sha256, f"dataset sha256 of metric {metric!r}")
    _model, row = version_row(session, name, version)
    ev = EvaluationRow(
        version_id=row.id,
        metric=metric,
        value=value,
        dataset=dataset,
        dataset_sha256=dataset_sha256,
        created_at=utcnow(),
        created_by=actor,
    )
    session.add(ev)
    session.flush()
    return _evaluation(name, version, ev)


def _evaluation(name: str, version: int, e: EvaluationRow) -> Evaluation:
    return Evaluation(
        name,
        version,
        e.metric,
        e.value,
        e.dataset,
        e.dataset_sha256,
        utc(e.created_at),
        e.created_by,
    )


def version_info(session: Session, model: ModelRow, row: VersionRow) -> VersionInfo:
    aliases = session.scalars(
        sa.select(AliasRow.name).where(AliasRow.version_id == row.id).order_by(AliasRow.name)
    ).all()
    bundles = session.scalars(
        sa.select(BundleRow).where(BundleRow.version_id == row.id).order_by(BundleRow.variant)
    ).all()
    evals = session.scalars(
        sa.select(EvaluationRow)
        .where(EvaluationRow.version_id == row.id)
        .order_by(EvaluationRow.id)
    ).all()
    return VersionInfo(
        model=model.name,
        version=row.version,
        artifact=_blob(session, row.model_sha256),
        card=ModelCard.from_json(row.card_json) if row.card_json else None,
        card_sha256=row.card_sha256,
        description=row.description,
        created_at=utc(row.created_at),
        created_by=row.created_by,
        aliases=tuple(aliases),
        bundles=tuple(_bundle_info(session, model, row, b) for b in bundles),
        evaluations=tuple(_evaluation(model.name, row.version, e) for e in evals),
    )


def get_version(session: Session, name: str, version: int) -> VersionInfo:
    model, row = version_row(session, name, version)
    return version_info(session, model, row)


def resolve(session: Session, name: str, which: int | str | None) -> VersionInfo:
    """A version by number, by alias (``production``), or the newest when ``which`` is None."""
    if isinstance(which, int):
        return get_version(session, name, which)
    model = model_row(session, name)
    if which is None:
        versions = _versions_of(session, model)
        if not versions:
            raise RegistryError(f"model {name!r} has no versions yet")
        return get_version(session, name, versions[-1])
    check_name(which, "alias")
    alias = session.scalars(
        sa.select(AliasRow).where(AliasRow.model_id == model.id, AliasRow.name == which)
    ).one_or_none()
    if alias is None:
        known = session.scalars(
            sa.select(AliasRow.name).where(AliasRow.model_id == model.id).order_by(AliasRow.name)
        ).all()
        hint = f"its aliases are {', '.join(known)}" if known else "it has no aliases"
        raise RegistryError(f"model {name!r} has no alias {which!r} ({hint})")
    row = session.get(VersionRow, alias.version_id)
    assert row is not None
    return version_info(session, model, row)


def list_versions(session: Session, name: str) -> list[VersionInfo]:
    model = model_row(session, name)
    rows = session.scalars(
        sa.select(VersionRow).where(VersionRow.model_id == model.id).order_by(VersionRow.version)
    ).all()
    return [version_info(session, model, r) for r in rows]


def _model_info(session: Session, model: ModelRow) -> ModelInfo:
    pairs = session.execute(
        sa.select(AliasRow.name, VersionRow.version)
        .join(VersionRow, AliasRow.version_id == VersionRow.id)
        .where(AliasRow.model_id == model.id)
        .order_by(AliasRow.name)
    ).all()
    return ModelInfo(
        name=model.name,
        description=model.description,
        created_at=utc(model.created_at),
        created_by=model.created_by,
        versions=tuple(_versions_of(session, model)),
        aliases={a: int(v) for a, v in pairs},
    )


def get_model(session: Session, name: str) -> ModelInfo:
    return _model_info(session, model_row(session, name))


def list_models(session: Session) -> list[ModelInfo]:
    rows = session.scalars(sa.select(ModelRow).order_by(ModelRow.name)).all()
    return [_model_info(session, m) for m in rows]


def find_versions(session: Session, sha256: str) -> list[VersionInfo]:
    """Versions whose model file, card or one of whose bundles has this sha256."""
    sha256 = sha256.lower()
    bundle_versions = sa.select(BundleRow.version_id).where(BundleRow.sha256 == sha256)
    rows = session.scalars(
        sa.select(VersionRow)
        .where(
            sa.or_(
                VersionRow.model_sha256 == sha256,
                VersionRow.card_sha256 == sha256,
                VersionRow.id.in_(bundle_versions),
            )
        )
        .order_by(VersionRow.id)
    ).all()
    out = []
    for r in rows:
        model = session.get(ModelRow, r.model_id)
        assert model is not None
        out.append(version_info(session, model, r))
    return out
