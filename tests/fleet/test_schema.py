"""The fleet's ORM tables and the Alembic revision 0002_fleet describe the same schema."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from edgeloop.db import FLEET_TABLES, MIGRATIONS_DIR, Base, current_revision, make_engine, upgrade


def test_migration_0002_fleet_matches_the_tables(db_url: str) -> None:
    upgrade(db_url)
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            assert set(sa.inspect(conn).get_table_names()) >= FLEET_TABLES
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = [d for d in compare_metadata(ctx, Base.metadata) if "fleet_" in repr(d)]
        assert diff == []
        assert current_revision(engine) is not None
    finally:
        engine.dispose()


def test_downgrade_to_the_registry_drops_only_the_fleet_tables(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/down.db"
    upgrade(url, "0002_fleet")
    engine = make_engine(url)
    try:
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0001_registry")
        with engine.connect() as conn:
            names = set(sa.inspect(conn).get_table_names())
        assert not FLEET_TABLES & names
        assert {"models", "model_versions", "aliases"} <= names
    finally:
        engine.dispose()
