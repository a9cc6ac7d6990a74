"""Aliases (``production``, ``canary``, any name) and the history of every move.

A move to an older version is recorded as a ``revert`` (a rollout that rolls back records the
alias moves it makes here too, with ``action="revert"`` and the failed gate as the reason).
"Rollback" is the rollout's word, not the alias's: see docs/design.md's glossary.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from edgeloop.db import AliasEventRow, AliasRow, ModelRow, VersionRow, utcnow
from edgeloop.errors import RegistryError
from edgeloop.registry._ops import model_row, utc, version_row
from edgeloop.registry._types import AliasEvent, check_name

__all__ = ["ALIAS_ACTIONS", "alias_history", "remove_alias", "set_alias"]

ALIAS_ACTIONS = ("set", "revert", "remove")


def set_alias(
    session: Session,
    name: str,
    alias: str,
    version: int,
    *,
    reason: str,
    actor: str,
    action: str | None = None,
) -> AliasEvent:
    """Point ``alias`` at ``version`` and record the move.

    ``action`` defaults to ``revert`` when the alias moves to an older version, else ``set``.
    """
    check_name(alias, "alias")
    if action is not None and action not in ALIAS_ACTIONS[:2]:
        raise RegistryError(f"alias action {action!r} is not one of set, revert")
    model, row = version_row(session, name, version)
    current = session.scalars(
        sa.select(AliasRow)
        .where(AliasRow.model_id == model.id, AliasRow.name == alias)
        .with_for_update()
    ).one_or_none()
    before: int | None = None
    now = utcnow()
    if current is None:
        session.add(AliasRow(model_id=model.id, name=alias, version_id=row.id, updated_at=now))
    else:
        old = session.get(VersionRow, current.version_id)
        before = old.version if old is not None else None
        current.version_id = row.id
        current.updated_at = now
    if action is None:
        action = "revert" if before is not None and version < before else "set"
    return _record(session, model, alias, action, before, version, reason, actor, now)


def remove_alias(session: Session, name: str, alias: str, *, reason: str, actor: str) -> AliasEvent:
    check_name(alias, "alias")
    model = model_row(session, name)
    current = session.scalars(
        sa.select(AliasRow).where(AliasRow.model_id == model.id, AliasRow.name == alias)
    ).one_or_none()
    if current is None:
        raise RegistryError(f"model {name!r} has no alias {alias!r} to remove")
    old = session.get(VersionRow, current.version_id)
    session.delete(current)
    before = old.version if old is not None else None
    return _record(session, model, alias, "remove", before, None, reason, actor, utcnow())


def _record(
    session: Session,
    model: ModelRow,
    alias: str,
    action: str,
    before: int | None,
    after: int | None,
    reason: str,
    actor: str,
    when: datetime,
) -> AliasEvent:
    session.add(
        AliasEventRow(
            model_id=model.id,
            alias=alias,
            action=action,
            from_version=before,
            to_version=after,
            reason=reason,
            actor=actor,
            created_at=when,
        )
    )
    session.flush()
    return AliasEvent(model.name, alias, action, before, after, reason, actor, when)


def alias_history(session: Session, name: str, alias: str | None = None) -> list[AliasEvent]:
    """Every move of ``alias`` (or of all the model's aliases), oldest first."""
    model = model_row(session, name)
    stmt = sa.select(AliasEventRow).where(AliasEventRow.model_id == model.id)
    if alias is not None:
        stmt = stmt.where(AliasEventRow.alias == alias)
    rows = session.scalars(stmt.order_by(AliasEventRow.id)).all()
    return [
        AliasEvent(
            name,
            r.alias,
            r.action,
            r.from_version,
            r.to_version,
            r.reason,
            r.actor,
            utc(r.created_at),
        )
        for r in rows
    ]
