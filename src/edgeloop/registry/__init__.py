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
"""

from __future__ import annotations

from edgeloop.registry import _tables as _tables  # registers the tables on Base
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
    "current_revision",
    "default_actor",
    "default_data_dir",
    "default_url",
    "downgrade",
    "head_revision",
    "make_engine",
    "media_type_for",
    "parse_ref",
    "read_session",
    "session_factory",
    "upgrade",
    "utcnow",
    "write_session",
]
