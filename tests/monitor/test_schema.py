"""The monitoring ORM tables and the Alembic revision 0006_monitor describe the same schema."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from edgeloop.db import MIGRATIONS_DIR, MONITOR_TABLES, Base, make_engine, upgrade


def test_migration_0006_monitor_matches_the_tables(db_url: str) -> None:
    url = db_url
    upgrade(url)
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            assert set(sa.inspect(conn).get_table_names()) >= MONITOR_TABLES
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = [d for d in compare_metadata(ctx, Base.metadata)
                    if any(t in repr(d) for t in MONITOR_TABLES)]
        assert diff == []
    finally:
        engine.dispose()


def test_downgrade_drops_only_the_monitor_tables(tmp_path: Path) -> None:
    from alembic import command
    from alembic.config import Config

    url = f"sqlite:///{tmp_path}/down.db"
    upgrade(url)
    engine = make_engine(url)
    try:
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0004_alias_revert")
        with engine.connect() as conn:
            names = set(sa.inspect(conn).get_table_names())
        assert not MONITOR_TABLES & names
        assert {"fleet_devices", "fleet_rollouts", "models"} <= names
    finally:
        engine.dispose()
