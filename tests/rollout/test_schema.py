"""The rollout tables and the Alembic revision 0003_rollout describe the same schema."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from edgeloop.db import (
    MIGRATIONS_DIR,
    ROLLOUT_TABLES,
    Base,
    current_revision,
    head_revision,
    make_engine,
    upgrade,
)


def test_migration_0003_rollout_matches_the_tables(db_url: str) -> None:
    upgrade(db_url)
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            assert set(sa.inspect(conn).get_table_names()) >= ROLLOUT_TABLES
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = [
                d
                for d in compare_metadata(ctx, Base.metadata)
                if any(t in repr(d) for t in ROLLOUT_TABLES)
            ]
        assert diff == []
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()


def test_downgrade_to_the_fleet_drops_only_the_rollout_tables(tmp_path: Path) -> None:
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
            command.downgrade(cfg, "0002_fleet")
        with engine.connect() as conn:
            names = set(sa.inspect(conn).get_table_names())
        assert not ROLLOUT_TABLES & names
        assert {"fleet_devices", "fleet_reports", "aliases"} <= names
    finally:
        engine.dispose()
