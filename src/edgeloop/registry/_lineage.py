"""Walk a version's lineage back through the registry.

A version's ModelCard lists what it came from as ``LineageRef``s (role + sha256). Each hash is
looked up: a model file, card or bundle of a registered version resolves to that version (whose
own lineage is then walked), a stored blob to the blob, anything else stays ``unknown`` with its
hash. A ``parent_version`` ref may also name its parent as ``model@N``.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from edgeloop.db import BlobRow, BundleRow, LineageRow, ModelRow, VersionRow
from edgeloop.registry._ops import version_row
from edgeloop.registry._types import LineageNode

__all__ = ["add_lineage_ref", "derived_from", "lineage"]

MAX_DEPTH = 64


def lineage(session: Session, name: str, version: int) -> LineageNode:
    """The tree of everything ``name@version`` came from, rooted at the version itself."""
    model, row = version_row(session, name, version)
    return _version_node(session, "self", row.model_sha256, None, None, model, row, set(), 0)


def _version_node(
    session: Session,
    role: str,
    sha256: str,
    ref_name: str | None,
    uri: str | None,
    model: ModelRow,
    row: VersionRow,
    path: set[int],
    depth: int,
    kind: str = "version",
) -> LineageNode:
    cycle = row.id in path
    children: tuple[LineageNode, ...] = ()
    if not cycle and depth < MAX_DEPTH:
        refs = session.scalars(
            sa.select(LineageRow)
            .where(LineageRow.version_id == row.id)
            .order_by(LineageRow.position)
        ).all()
        inner = path | {row.id}
        children = tuple(_resolve(session, r, inner, depth + 1) for r in refs)
    return LineageNode(
        role=role,
        sha256=sha256,
        kind=kind,
        name=ref_name,
        uri=uri,
        model=model.name,
        version=row.version,
        cycle=cycle,
        children=children,
    )


def _first_version(session: Session, condition: sa.ColumnElement[bool]) -> VersionRow | None:
    return session.scalars(sa.select(VersionRow).where(condition).order_by(VersionRow.id)).first()


def _by_name(session: Session, ref_name: str | None) -> VersionRow | None:
    """``model@N`` in a ref's name, for parents recorded by name."""
    if not ref_name or "@" not in ref_name:
        return None
    model_name, _, number = ref_name.rpartition("@")
    if not number.isdigit():
        return None
    return session.scalars(
        sa.select(VersionRow)
        .join(ModelRow, VersionRow.model_id == ModelRow.id)
        .where(ModelRow.name == model_name, VersionRow.version == int(number))
    ).one_or_none()


def _resolve(session: Session, ref: LineageRow, path: set[int], depth: int) -> LineageNode:
    sha = ref.sha256
    found: tuple[VersionRow, str] | None = None
    if (v := _first_version(session, VersionRow.model_sha256 == sha)) is not None:
        found = (v, "version")
    elif (v := _first_version(session, VersionRow.card_sha256 == sha)) is not None:
        found = (v, "card")
    else:
        bundle = session.scalars(
            sa.select(BundleRow).where(BundleRow.sha256 == sha).order_by(BundleRow.id)
        ).first()
        if bundle is not None and (v := session.get(VersionRow, bundle.version_id)) is not None:
            found = (v, "bundle")
        elif ref.role == "parent_version" and (v := _by_name(session, ref.name)) is not None:
            found = (v, "version")
    if found is not None:
        v, kind = found
        model = session.get(ModelRow, v.model_id)
        assert model is not None
        return _version_node(session, ref.role, sha, ref.name, ref.uri, model, v, path, depth, kind)
    kind = "blob" if session.get(BlobRow, sha) is not None else "unknown"
    return LineageNode(role=ref.role, sha256=sha, kind=kind, name=ref.name, uri=ref.uri)


def derived_from(session: Session, sha256: str) -> list[tuple[str, int, str]]:
    """Versions whose card lists ``sha256`` in its lineage: (model, version, role), oldest first.

    The forward direction of :func:`lineage`: which models came from this dataset, recipe or
    source model.
    """
    rows = session.execute(
        sa.select(ModelRow.name, VersionRow.version, LineageRow.role)
        .join(VersionRow, LineageRow.version_id == VersionRow.id)
        .join(ModelRow, VersionRow.model_id == ModelRow.id)
        .where(LineageRow.sha256 == sha256.lower())
        .order_by(VersionRow.id, LineageRow.position)
    ).all()
    return [(str(m), int(v), str(r)) for m, v, r in rows]


def add_lineage_ref(
    session: Session, name: str, version: int, role: str, sha256: str, note: str | None = None
) -> None:
    """Append a reference to ``name@version``'s lineage after it was registered: e.g. the
    monitoring reference it is judged against (``monitor_reference``) and each explicit
    re-baseline (``monitor_rebaseline``, the reason in ``note``). Appending never rewrites what
    the version was registered with."""
    _, row = version_row(session, name, version)
    last = session.scalar(
        sa.select(sa.func.max(LineageRow.position)).where(LineageRow.version_id == row.id)
    )
    session.add(
        LineageRow(
            version_id=row.id,
            position=(-1 if last is None else int(last)) + 1,
            role=role,
            sha256=sha256.lower(),
            name=note,
            uri=None,
        )
    )
