"""Alembic environment for every service table (registry, fleet, rollout): one chain.

Run programmatically by :func:`edgeloop.db.upgrade`, which passes an open connection in
``config.attributes["connection"]``. For ``alembic revision --autogenerate``, point a config's
``script_location`` at this directory and pass ``-x url=DATABASE_URL``.
SQLite gets batch mode (copy-and-move) so ALTERs work there as on PostgreSQL.
"""

from __future__ import annotations

from alembic import context

from edgeloop.db import Base, make_engine  # the package declares every service table on Base

config = context.config
target_metadata = Base.metadata


def _run(connection: object) -> None:
    dialect = getattr(connection, "dialect", None)
    context.configure(
        connection=connection,  # type: ignore[arg-type]
        target_metadata=target_metadata,
        render_as_batch=getattr(dialect, "name", "") == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    context.configure(
        url=context.get_x_argument(as_dictionary=True).get("url")
        or config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()
else:
    given = config.attributes.get("connection")
    if given is not None:
        _run(given)
    else:
        url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option(
            "sqlalchemy.url"
        )
        engine = make_engine(url)
        try:
            with engine.begin() as conn:
                _run(conn)
        finally:
            engine.dispose()
