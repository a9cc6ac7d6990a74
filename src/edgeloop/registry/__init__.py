"""The model registry: versions, artifacts, cards, evaluations, bundles, aliases and lineage.

Service layer (SQLAlchemy); SQLite by default, PostgreSQL by URL. The tables, engines,
sessions and the migration chain live in :mod:`edgeloop.db`; this package owns what the
registry's rows mean.

::

    with Registry("sqlite:///reg.db", data_dir="reg") as reg:
        v = reg.push("kws.onnx", "kws", card="kws.card.json", alias="canary")
        reg.set_alias(f"kws@{v.version}", "production", reason="canary healthy for 24 h")
        tree = reg.lineage("kws@production")

Code that already holds a :class:`~sqlalchemy.orm.Session` (the fleet server, rollouts) calls
the session-level functions instead, inside its own transaction
(:func:`edgeloop.db.write_session`)::

    with write_session(engine) as s:
        set_alias(s, "kws", "production", 2, reason="gate p99_ms failed", actor="rollout",
                  action="revert")
"""

from __future__ import annotations

from edgeloop.registry._aliases import ALIAS_ACTIONS, alias_history, remove_alias, set_alias
from edgeloop.registry._blobs import BlobStore, media_type_for
from edgeloop.registry._lineage import add_lineage_ref, derived_from, lineage
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
from edgeloop.registry._suites import (
    SUITE_DATASET,
    SUITE_METRICS,
    EvalSuite,
    Regression,
    get_suite,
    suite_regression,
)
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
    "add_lineage_ref",
    "ALIAS_ACTIONS",
    "AliasEvent",
    "BlobInfo",
    "BlobStore",
    "BundleInfo",
    "BundleSpec",
    "EvalSuite",
    "Evaluation",
    "LineageNode",
    "ModelInfo",
    "Registry",
    "Regression",
    "SUITE_DATASET",
    "SUITE_METRICS",
    "VersionInfo",
    "bundle_manifest",
    "add_evaluation",
    "alias_history",
    "default_actor",
    "derived_from",
    "find_versions",
    "get_model",
    "get_suite",
    "get_version",
    "lineage",
    "list_models",
    "list_versions",
    "media_type_for",
    "parse_ref",
    "remove_alias",
    "resolve",
    "set_alias",
    "suite_regression",
]
