"""The shared database fixtures give each test an empty database on each engine."""

from __future__ import annotations

import sqlalchemy as sa


def test_db_url_is_an_empty_database_that_accepts_writes(db_url: str) -> None:
    engine = sa.create_engine(db_url)
    try:
        with engine.begin() as conn:
            assert sa.inspect(conn).get_table_names() == []
            conn.execute(sa.text("CREATE TABLE probe (x INTEGER)"))
            conn.execute(sa.text("INSERT INTO probe VALUES (42)"))
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT x FROM probe")).scalar_one() == 42
    finally:
        engine.dispose()
