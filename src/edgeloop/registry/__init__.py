"""The model registry: versions, artifacts, cards, evaluations, bundles, aliases and lineage.

Service layer (SQLAlchemy); SQLite by default, PostgreSQL by URL, schema by Alembic. Every
service table (this package's, the fleet's, rollouts') derives from :class:`Base` and is
created by :func:`upgrade`.
"""

from __future__ import annotations

from edgeloop.registry._db import (
    Base,
    current_revision,
    default_data_dir,
    default_url,
    head_revision,
    make_engine,
    read_session,
    session_factory,
    upgrade,
    utcnow,
    write_session,
)

__all__ = [
    "Base",
    "current_revision",
    "default_data_dir",
    "default_url",
    "head_revision",
    "make_engine",
    "read_session",
    "session_factory",
    "upgrade",
    "utcnow",
    "write_session",
]
