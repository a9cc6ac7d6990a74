"""The Alembic chain: empty database to head on both engines, matching the ORM tables."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from edgeloop.db import (
    MIGRATIONS_DIR,
    REGISTRY_TABLES,
    Base,
    current_revision,
    default_url,
    downgrade,
    head_revision,
    make_engine,
    upgrade,
)
from edgeloop.errors import RegistryError


def _tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_empty_database_migrates_to_head(db_url: str) -> None:
    assert _tables(db_url) == set()

    upgrade(db_url)

    engine = make_engine(db_url)
    try:
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()
    assert _tables(db_url) >= REGISTRY_TABLES


def test_upgrade_twice_changes_nothing(db_url: str) -> None:
    upgrade(db_url)
    before = _tables(db_url)

    upgrade(db_url)

    assert _tables(db_url) == before


def test_migrated_schema_matches_the_registry_tables(db_url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    upgrade(db_url)
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            diffs = compare_metadata(ctx, Base.metadata)
    finally:
        engine.dispose()

    def table_of(diff: object) -> str:
        op, *rest = diff[0] if isinstance(diff, list) else diff  # type: ignore[index]
        if op in ("add_column", "remove_column") or op.startswith("modify_"):
            return str(rest[1])
        obj = rest[0]
        return str(obj.name if isinstance(obj, sa.Table) else obj.table.name)

    # Other packages' tables (fleet, rollout) are checked by their own tests.
    mine = [d for d in diffs if table_of(d) in REGISTRY_TABLES]
    assert mine == []


def test_downgrade_to_base_and_back(db_url: str) -> None:
    upgrade(db_url)

    downgrade(db_url, "base")
    assert _tables(db_url) <= {"alembic_version"}
    upgrade(db_url)

    assert _tables(db_url) >= REGISTRY_TABLES


def test_chain_is_linear_and_rooted_at_0001_registry() -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    script = ScriptDirectory.from_config(cfg)
    revisions = list(script.walk_revisions())  # newest first

    assert len(script.get_heads()) == 1
    assert revisions[-1].revision == "0001_registry"
    assert revisions[-1].down_revision is None
    for newer, older in zip(revisions, revisions[1:], strict=False):
        assert newer.down_revision == older.revision


def test_sqlite_is_tuned_for_several_processes(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'sub' / 'e.db'}")
    try:
        with engine.connect() as conn:
            pragmas = {
                p: conn.exec_driver_sql(f"PRAGMA {p}").scalar()
                for p in ("journal_mode", "foreign_keys", "busy_timeout")
            }
    finally:
        engine.dispose()

    assert pragmas == {"journal_mode": "wal", "foreign_keys": 1, "busy_timeout": 30000}


def test_sqlite_transaction_sees_a_stable_snapshot(tmp_path: Path) -> None:
    """BEGIN is issued by SQLAlchemy, so a read transaction does not see later commits."""
    url = f"sqlite:///{tmp_path / 's.db'}"
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
        with engine.connect() as reader:
            assert reader.exec_driver_sql("SELECT count(*) FROM t").scalar() == 0
            with engine.begin() as writer:
                writer.exec_driver_sql("INSERT INTO t VALUES (1)")
            assert reader.exec_driver_sql("SELECT count(*) FROM t").scalar() == 0
    finally:
        engine.dispose()


def test_default_url_follows_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("EDGELOOP_DB", raising=False)
    monkeypatch.setenv("EDGELOOP_DATA", str(tmp_path))
    assert default_url() == f"sqlite:///{tmp_path / 'edgeloop.db'}"

    monkeypatch.setenv("EDGELOOP_DB", "postgresql+psycopg://u@127.0.0.1:1/x")
    assert default_url() == "postgresql+psycopg://u@127.0.0.1:1/x"


def test_bad_database_url_is_a_registry_error() -> None:
    with pytest.raises(RegistryError, match="'not a url' is not a valid SQLAlchemy URL"):
        make_engine("not a url")


def test_unreachable_database_is_a_registry_error() -> None:
    from _live import refused_port

    with (
        refused_port() as port,  # bound, not listening: no other server can take it
        pytest.raises(RegistryError, match="cannot migrate"),
    ):
        upgrade(f"postgresql+psycopg://u@127.0.0.1:{port}/x?connect_timeout=2")


def test_registry_defaults_to_sqlite_in_its_data_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from edgeloop.registry import Registry

    monkeypatch.delenv("EDGELOOP_DB", raising=False)

    with Registry(data_dir=tmp_path / "reg") as reg:
        assert reg.list_models() == []

    assert (tmp_path / "reg" / "edgeloop.db").is_file()


def test_registry_disposes_only_the_engine_it_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edgeloop.registry import Registry

    disposed: list[object] = []
    monkeypatch.setattr(sa.engine.Engine, "dispose", lambda self, close=True: disposed.append(self))
    shared = make_engine(f"sqlite:///{tmp_path / 'shared.db'}")

    Registry(shared, tmp_path / "data").close()
    own = Registry(f"sqlite:///{tmp_path / 'own.db'}", tmp_path / "data")
    own.close()

    assert shared not in disposed
    assert own.engine in disposed


def test_engine_errors_never_show_the_password() -> None:
    with pytest.raises(RegistryError, match="cannot open database") as info:
        make_engine("mysql+nodriver://admin:hunter2@db.example/edgeloop")

    assert "hunter2" not in str(info.value) and "admin:***@" in str(info.value)


def test_0004_renames_alias_rollbacks_to_reverts_and_back(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/alias.db"
    upgrade(url, "0003_rollout")
    engine = make_engine(url)
    now = "2026-01-01 00:00:00"
    try:
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO models (id, name, description, created_at, created_by) "
                    "VALUES (1, 'kws', '', :t, 'ann')"
                ),
                {"t": now},
            )
            for action in ("set", "rollback", "remove"):
                conn.execute(
                    sa.text(
                        "INSERT INTO alias_events (model_id, alias, action, reason, actor, "
                        "created_at) VALUES (1, 'production', :a, '', 'ann', :t)"
                    ),
                    {"a": action, "t": now},
                )

        def actions() -> list[str]:
            with engine.connect() as conn:
                q = "SELECT action FROM alias_events ORDER BY id"
                return [r[0] for r in conn.execute(sa.text(q))]

        upgrade(engine)
        after = actions()
        downgrade(engine, "0003_rollout")

        assert after == ["set", "revert", "remove"]
        assert actions() == ["set", "rollback", "remove"]
    finally:
        engine.dispose()
