"""The service layer's database: engines, sessions, every table, and the one migration chain.

Service layer (SQLAlchemy, Alembic). The registry (``edgeloop.registry``), the fleet server and
its rollouts (``edgeloop.fleet``) keep their rows in one database, declared here on one
:class:`Base` and created by one Alembic chain shipped inside this package
(``0001_registry`` -> ``0002_fleet`` -> ``0003_rollout`` -> ``0004_alias_revert`` ->
``0005_dashboard_sessions`` -> ``0006_monitor`` -> ``0007_eval_suites`` ->
``0008_monitor_jobs`` -> ``0009_rollout_controls`` -> ``0010_fleet_generation`` ->
``0011_autoheal`` -> ``0012_federated`` -> ``0013_autoheal_runs`` ->
``0014_device_generation``; the revision
ids are stored in every existing database and never change). SQLite is the embedded default,
PostgreSQL is chosen by URL.

The row classes are the schema, not an API: the packages that own each table (registry, fleet)
read and write them inside their own transactions and hand dataclasses to everyone else.

::

    engine = make_engine("sqlite:///edgeloop.db")
    upgrade(engine)                      # create or migrate to the newest revision
    with write_session(engine) as s:     # BEGIN IMMEDIATE on SQLite; committed at the end
        s.add(...)
"""

from __future__ import annotations

from edgeloop.db._autoheal_tables import (
    AUTOHEAL_TABLES,
    AutohealActionRow,
    AutohealRunRow,
    AutohealStateRow,
)
from edgeloop.db._dashboard_tables import (
    DASHBOARD_TABLES,
    DashboardSessionRow,
    LoginFailureRow,
)
from edgeloop.db._engine import (
    MIGRATIONS_DIR,
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
from edgeloop.db._federated_tables import FEDERATED_TABLES, FederatedNodeRow, FederatedRunRow
from edgeloop.db._fleet_tables import (
    FLEET_TABLES,
    DeviceRow,
    GenerationRow,
    NonceRow,
    ReleaseRow,
    ReportRow,
    TokenRow,
    VariantRow,
)
from edgeloop.db._monitor_tables import (
    MONITOR_TABLES,
    MonitorAlertRow,
    MonitorEvaluationRow,
    MonitorEventRow,
    MonitorJobRow,
    MonitorReferenceRow,
    MonitorSketchRow,
)
from edgeloop.db._registry_tables import (
    REGISTRY_TABLES,
    AliasEventRow,
    AliasRow,
    BlobRow,
    BundleRow,
    EvalSuiteRow,
    EvaluationRow,
    LineageRow,
    ModelRow,
    VersionRow,
)
from edgeloop.db._rollout_tables import (
    ROLLOUT_TABLES,
    RolloutCheckRow,
    RolloutDeviceRow,
    RolloutEventRow,
    RolloutRow,
)

__all__ = [
    "AUTOHEAL_TABLES",
    "FEDERATED_TABLES",
    "DASHBOARD_TABLES",
    "FLEET_TABLES",
    "MIGRATIONS_DIR",
    "MONITOR_TABLES",
    "REGISTRY_TABLES",
    "ROLLOUT_TABLES",
    "AliasEventRow",
    "AliasRow",
    "AutohealActionRow",
    "AutohealRunRow",
    "AutohealStateRow",
    "Base",
    "BlobRow",
    "BundleRow",
    "DashboardSessionRow",
    "DeviceRow",
    "FederatedNodeRow",
    "FederatedRunRow",
    "GenerationRow",
    "EvalSuiteRow",
    "EvaluationRow",
    "LineageRow",
    "LoginFailureRow",
    "ModelRow",
    "MonitorAlertRow",
    "MonitorEvaluationRow",
    "MonitorEventRow",
    "MonitorJobRow",
    "MonitorReferenceRow",
    "MonitorSketchRow",
    "NonceRow",
    "ReleaseRow",
    "ReportRow",
    "RolloutCheckRow",
    "RolloutDeviceRow",
    "RolloutEventRow",
    "RolloutRow",
    "TokenRow",
    "VariantRow",
    "VersionRow",
    "current_revision",
    "default_data_dir",
    "default_url",
    "downgrade",
    "head_revision",
    "make_engine",
    "read_session",
    "session_factory",
    "upgrade",
    "utcnow",
    "write_session",
]
