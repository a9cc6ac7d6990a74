"""Engines, sessions and migrations shared by every service table (registry, fleet, rollouts).

All service tables derive from the one :class:`Base`, live in one database and are created by
one Alembic chain shipped inside the package (``0001_registry`` -> ``0002_fleet`` ->
``0003_rollout`` -> ``0004_alias_revert`` -> ``0005_dashboard_sessions`` -> ``0006_monitor`` ->
``0007_eval_suites`` -> ``0008_monitor_jobs`` -> ``0009_rollout_controls`` ->
``0010_fleet_generation`` -> ``0011_autoheal`` -> ``0012_federated`` ->
``0013_autoheal_runs`` -> ``0014_device_generation``).
SQLite is the embedded default (a file under the user's data dir, or ``$EDGELOOP_DB``);
PostgreSQL is chosen by URL (``postgresql+psycopg://...``).

SQLite is tuned so that several server processes can share one file: WAL journal, foreign keys
on, a busy timeout, and transactions that start with ``BEGIN`` (reads) or ``BEGIN IMMEDIATE``
(writes, through :func:`write_session`), so two writers queue instead of failing halfway.
Within one process, writers to a SQLite file also queue on a lock before ``BEGIN IMMEDIATE``:
SQLite's busy handler polls with sleeps of up to 100 ms, so a server with dozens of request
threads contending for the write lock through it spends most of its time asleep.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

from edgeloop._io import default_data_dir
from edgeloop.errors import RegistryError

__all__ = [
    "Base",
    "MIGRATIONS_DIR",
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

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
_BEGIN_OPTION = "edgeloop_sqlite_begin"
_BUSY_TIMEOUT_MS = 30_000
_MIGRATION_LOCK = 0x6564_6765_6C6F  # "edgelo": the advisory lock migrations hold on PostgreSQL
_SQLITE_WRITERS: dict[str, threading.RLock] = {}
_SQLITE_WRITERS_GUARD = threading.Lock()

_NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """The declarative base of every service table (registry, fleet, rollout)."""

    metadata = sa.MetaData(naming_convention=_NAMING)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def default_url() -> str:
    """``$EDGELOOP_DB``, else a SQLite file ``edgeloop.db`` in :func:`default_data_dir`."""
    env = os.environ.get("EDGELOOP_DB")
    if env:
        return env
    return f"sqlite:///{default_data_dir() / 'edgeloop.db'}"


def _tune_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        try:
            cur.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
            cur.execute("PRAGMA journal_mode = WAL")
            cur.execute("PRAGMA synchronous = NORMAL")
            cur.execute("PRAGMA foreign_keys = ON")
        finally:
            cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        mode = conn.get_execution_options().get(_BEGIN_OPTION, "")
        conn.exec_driver_sql(f"BEGIN {mode}".strip())


def make_engine(url: str | None = None, **kwargs: Any) -> Engine:
    """An engine for ``url`` (default :func:`default_url`), SQLite tuned for shared use.

    A SQLite file's directory is created if missing. Extra keyword arguments go to
    :func:`sqlalchemy.create_engine`.
    """
    url = url or default_url()
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError as e:
        raise RegistryError(f"database URL {url!r} is not a valid SQLAlchemy URL: {e}") from e
    shown = repr(parsed.render_as_string(hide_password=True))
    is_sqlite = parsed.get_backend_name() == "sqlite"
    if is_sqlite and parsed.database not in (None, "", ":memory:"):
        path = Path(parsed.database or "").expanduser()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # a new database file is the owner's alone (0600): it holds device keys and tokens'
            # hashes; SQLite gives its -wal and -shm files the same mode. An empty file is a
            # valid empty database.
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        except FileExistsError:
            pass
        except OSError as e:
            raise RegistryError(f"cannot create the directory for database {shown}: {e}") from e
    if is_sqlite:
        kwargs.setdefault("connect_args", {}).setdefault("check_same_thread", False)
    try:
        engine = sa.create_engine(parsed, **kwargs)
    except (sa.exc.ArgumentError, ImportError) as e:
        raise RegistryError(f"cannot open database {shown}: {e}") from e
    if is_sqlite:
        _tune_sqlite(engine)
    return engine


_FACTORIES: weakref.WeakKeyDictionary[Engine, dict[bool, sessionmaker[Session]]] = (
    weakref.WeakKeyDictionary()
)
_FACTORIES_GUARD = threading.Lock()


def session_factory(engine: Engine, *, write: bool = False) -> sessionmaker[Session]:
    """A ``sessionmaker`` bound to ``engine``; ``write=True`` begins SQLite with IMMEDIATE.

    Made once per engine and kind (a ``sessionmaker`` and the option engine cost a check-in
    measurable CPU when made per transaction); a session from it is the caller's own."""
    with _FACTORIES_GUARD:
        made = _FACTORIES.setdefault(engine, {})
        factory = made.get(write)
        if factory is None:
            bind = engine
            if write and engine.dialect.name == "sqlite":
                bind = engine.execution_options(**{_BEGIN_OPTION: "IMMEDIATE"})
            factory = made[write] = sessionmaker(bind=bind, expire_on_commit=False)
    return factory


@contextmanager
def _database_errors(engine: Engine) -> Iterator[None]:
    """A database that is down, locked or broken becomes one :class:`RegistryError` line.

    Constraint violations (``IntegrityError``) pass through: callers retry or explain them.
    """
    try:
        yield
    except sa.exc.IntegrityError:
        raise
    except sa.exc.DBAPIError as e:
        detail = str(e.orig).strip().splitlines()[0] if e.orig is not None else str(e)
        raise RegistryError(f"database {_shown(engine)} failed: {detail}") from e


@contextmanager
def read_session(engine: Engine) -> Iterator[Session]:
    """A session for reads; rolled back at the end (nothing it does is kept)."""
    with _database_errors(engine), session_factory(engine)() as session:
        try:
            yield session
        finally:
            session.rollback()


def _writer_lock(engine: Engine) -> AbstractContextManager[Any]:
    """The in-process queue for writers to one SQLite database (none for other databases).

    Threads wait on a lock, woken the moment the writer before them commits, instead of in
    SQLite's busy handler, which polls with growing sleeps. Other processes sharing the file
    still meet at ``BEGIN IMMEDIATE``. Re-entrant, so a nested write in one thread behaves as
    it did without the lock.
    """
    if engine.dialect.name != "sqlite":
        return nullcontext()
    key = str(engine.url.database or ":memory:")
    with _SQLITE_WRITERS_GUARD:
        return _SQLITE_WRITERS.setdefault(key, threading.RLock())


@contextmanager
def write_session(engine: Engine) -> Iterator[Session]:
    """A session committed when the block ends, rolled back if it raises.

    On SQLite the transaction starts with ``BEGIN IMMEDIATE``: it takes the write lock first
    (waiting up to the busy timeout), so concurrent writers from several processes serialize;
    writers in this process queue on a lock first (see :func:`_writer_lock`).
    """
    with (
        _writer_lock(engine),
        _database_errors(engine),
        session_factory(engine, write=True)() as session,
        session.begin(),
    ):
        yield session


def _alembic_config(connection: sa.Connection | None = None) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = connection
    return cfg


def upgrade(url_or_engine: str | Engine | None = None, revision: str = "heads") -> None:
    """Migrate the database to ``revision`` (default: the newest), creating it if empty."""
    from alembic import command
    from alembic.util import CommandError

    owned = not isinstance(url_or_engine, Engine)
    base = url_or_engine if isinstance(url_or_engine, Engine) else make_engine(url_or_engine)
    engine = base
    if base.dialect.name == "sqlite":
        engine = base.execution_options(**{_BEGIN_OPTION: "IMMEDIATE"})
    try:
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                # Several server processes may start at once: one migrates, the others wait.
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK})
            command.upgrade(_alembic_config(conn), revision)
    except CommandError as e:
        raise RegistryError(f"cannot migrate {_shown(engine)} to {revision!r}: {e}") from e
    except sa.exc.OperationalError as e:
        raise RegistryError(f"cannot migrate {_shown(engine)}: {e.orig}") from e
    finally:
        if owned:
            base.dispose()


def downgrade(url_or_engine: str | Engine, revision: str) -> None:
    """Migrate the database back to ``revision`` (``base`` removes every service table)."""
    from alembic import command
    from alembic.util import CommandError

    owned = not isinstance(url_or_engine, Engine)
    engine = url_or_engine if isinstance(url_or_engine, Engine) else make_engine(url_or_engine)
    try:
        with engine.begin() as conn:
            command.downgrade(_alembic_config(conn), revision)
    except CommandError as e:
        raise RegistryError(f"cannot migrate {_shown(engine)} down to {revision!r}: {e}") from e
    finally:
        if owned:
            engine.dispose()


def current_revision(engine: Engine) -> str | None:
    """The Alembic revision the database is at (None for an empty database)."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        heads = MigrationContext.configure(conn).get_current_heads()
    return ",".join(sorted(heads)) if heads else None


def head_revision() -> str:
    """The newest revision shipped in the package."""
    from alembic.script import ScriptDirectory

    heads = ScriptDirectory.from_config(_alembic_config()).get_heads()
    return ",".join(sorted(heads))


def _shown(engine: Engine) -> str:
    return repr(engine.url.render_as_string(hide_password=True))
