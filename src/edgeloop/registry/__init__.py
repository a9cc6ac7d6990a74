"""The model registry: versions, artifacts, cards, evaluations, bundles, aliases and lineage.

Service layer (SQLAlchemy); SQLite by default, PostgreSQL by URL, schema by Alembic. Every
service table (this package's, the fleet's, rollouts') derives from :class:`Base` and is
created by :func:`upgrade`, which runs the one migration chain shipped in the package
(``0001_registry`` -> ``0002_fleet`` -> ``0003_rollout``).

::

    with Registry("sqlite:///reg.db", data_dir="reg") as reg:
        v = reg.push("kws.onnx", "kws", card="kws.card.json", alias="canary")
        reg.set_alias(f"kws@{v.version}", "production", reason="canary healthy for 24 h")
        tree = reg.lineage("kws@production")

Code that already holds a :class:`~sqlalchemy.orm.Session` (the fleet server, rollouts) calls
the session-level functions instead, inside its own transaction::

    with write_session(engine) as s:
        set_alias(s, "kws", "production", 2, reason="gate p99_ms failed", actor="rollout",
                  action="rollback")
"""

from __future__ import annotations

from edgeloop.registry import _tables as _tables  # registers the tables on Base
from edgeloop.registry._aliases import ALIAS_ACTIONS, alias_history, remove_alias, set_alias
from edgeloop.registry._blobs import BlobStore, media_type_for
from edgeloop.registry._db import (
    Base,
    current_revision,
    default_data_dir,
    default_url,
    downgrade,
    head_revision,
    make_engine,
    read_session,
    session_factory,
    upgrade,
    utcnow,
    write_session,
)
from edgeloop.registry._lineage import derived_from, lineage
from edgeloop.registry._ops import (
    add_evaluation,
    find_versions,
    get_model,
    get_version,
    list_models,
    list_versions,
    resolve,
)
from edgeloop.registry._registry import BundleSpec, Registry, bundle_manifest, default_actor
from edgeloop.registry._types import (
    AliasEvent,
    BlobInfo,
    BundleInfo,
    Evaluation,
    LineageNode,
    ModelInfo,
    VersionInfo,
    parse_ref,
)

__all__ = [
    "ALIAS_ACTIONS",
    "AliasEvent",
    "Base",
    "BlobInfo",
    "BlobStore",
    "BundleInfo",
    "BundleSpec",
    "Evaluation",
    "LineageNode",
    "ModelInfo",
    "Registry",
    "VersionInfo",
    "bundle_manifest",
    "add_evaluation",
    "alias_history",
    "current_revision",
    "default_actor",
    "default_data_dir",
    "default_url",
    "derived_from",
    "downgrade",
    "find_versions",
    "get_model",
    "get_version",
    "head_revision",
    "lineage",
    "list_models",
    "list_versions",
    "make_engine",
    "media_type_for",
    "parse_ref",
    "read_session",
    "remove_alias",
    "resolve",
    "session_factory",
    "set_alias",
    "upgrade",
    "utcnow",
    "write_session",
]
