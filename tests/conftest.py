"""Shared fixtures: the real CLI in a subprocess, temp dirs, and CI strictness."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

# tests/onnx_writer.py (ONNX models without the onnx package) is importable from every test
sys.path.insert(0, str(Path(__file__).parent))

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def run_edgeloop(
    args: Sequence[str],
    *,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 600,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m edgeloop ARGS`` as a user would, capturing text output."""
    full_env = dict(os.environ)
    full_env.setdefault("COLUMNS", "200")
    full_env["PYTHONUNBUFFERED"] = "1"
    if env:
        full_env.update(env)
    return subprocess.run(
        [sys.executable, "-m", "edgeloop", *map(str, args)],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input,
    )


@pytest.fixture(autouse=True)
def _own_edgeloop_data(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Each test gets its own default registry/data dir (``$EDGELOOP_DATA``, no ``$EDGELOOP_DB``).

    Without it a command run without ``--db``/``--data`` would use the user's real data dir,
    shared by every pytest-xdist worker (and the developer's own registry). Tests that want
    the defaults set or delete these variables themselves, as test_migrations does.
    """
    monkeypatch.setenv("EDGELOOP_DATA", str(tmp_path_factory.mktemp("edgeloop-data")))
    monkeypatch.delenv("EDGELOOP_DB", raising=False)


@pytest.fixture
def cli(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """``cli("bench", "m.onnx")`` runs the real CLI in ``tmp_path``."""

    def _run(*args: str, **kw: object) -> subprocess.CompletedProcess[str]:
        kw.setdefault("cwd", tmp_path)
        return run_edgeloop(args, **kw)  # type: ignore[arg-type]

    return _run


def skip_or_fail(reason: str) -> None:
    """Skip loudly on a developer's machine; in CI a missing service is a failure."""
    if IN_CI:
        pytest.fail(f"CI must provide this: {reason}")
    pytest.skip(reason)


# --- PostgreSQL: one throwaway server per test session (registry, fleet and rollout suites) ---


def _postgres_bindir() -> Path | None:
    """The newest ``/usr/lib/postgresql/<major>/bin`` that has initdb, pg_ctl and postgres."""
    found = []
    for bindir in Path("/usr/lib/postgresql").glob("*/bin"):
        if all((bindir / tool).is_file() for tool in ("initdb", "pg_ctl", "postgres")):
            major = bindir.parent.name
            found.append((int(major) if major.isdigit() else 0, bindir))
    return max(found)[1] if found else None


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL server on a free loopback port for this session: ``postgresql+psycopg://`` URL.

    The URL points at the ``postgres`` maintenance database; use ``fresh_postgres_url`` for an
    empty database per test. initdb refuses to run as root, so as root the server runs as the
    ``postgres`` system user (created by Debian's package) in a temp dir chowned to it.
    """
    import shutil
    import tempfile

    from _live import PortTaken, on_free_port, port_taken

    bindir = _postgres_bindir()
    if bindir is None:
        skip_or_fail(
            "PostgreSQL binaries not found under /usr/lib/postgresql/*/bin (apt install postgresql)"
        )
        raise AssertionError("unreachable")
    prefix: list[str] = []
    root = Path(tempfile.mkdtemp(prefix="edgeloop-pg-"))
    if os.geteuid() == 0:
        import pwd

        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(root, ignore_errors=True)
            skip_or_fail("running as root and there is no 'postgres' system user to run initdb")
            raise AssertionError("unreachable") from None
        os.chown(root, pw.pw_uid, pw.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    data, log = root / "data", root / "server.log"

    def pg(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*prefix, *args], capture_output=True, text=True, timeout=timeout, cwd=root
        )

    init = pg(
        str(bindir / "initdb"),
        "-D",
        str(data),
        "-U",
        "postgres",
        "-A",
        "trust",
        "-E",
        "UTF8",
        "--no-sync",
        "--no-instructions",
    )
    if init.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        pytest.fail(f"initdb failed ({init.returncode}): {init.stderr.strip()}")

    def start_on(port: int) -> int:
        """pg_ctl start on ``port``; PortTaken if another server holds it (tests/_live.py)."""
        offset = log.stat().st_size if log.exists() else 0
        opts = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
        opts += " -c max_connections=200"
        start = pg(str(bindir / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(log), "-w",
                   "-t", "60", "start")  # fmt: skip
        if start.returncode == 0:
            return port
        detail = log.read_bytes()[offset:].decode(errors="replace") if log.exists() else ""
        detail = (detail + start.stderr)[-2000:]
        if port_taken(detail):
            raise PortTaken(f"PostgreSQL: port {port} is taken")
        shutil.rmtree(root, ignore_errors=True)
        pytest.fail(f"PostgreSQL did not start on port {port}: {detail.strip()}")

    port = on_free_port(start_on)
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        pg(str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def fresh_postgres_url(postgres_url: str) -> Iterator[str]:
    """An empty database of its own on the session's PostgreSQL server, dropped afterwards."""
    import uuid

    import psycopg

    name = f"t_{uuid.uuid4().hex[:16]}"
    dsn = postgres_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield postgres_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database URL, once on SQLite (a file in tmp_path) and once on PostgreSQL.

    Write a store's interface test once against ``db_url`` and it runs on both engines.
    """
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'edgeloop.db'}"
    return str(request.getfixturevalue("fresh_postgres_url"))


# --- TLS: one test CA per session (tests/tls_certs.py); a second one plays the attacker's ---


@pytest.fixture(scope="session")
def test_ca(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A CA and a 127.0.0.1 server certificate it signed (PEM files)."""
    from tls_certs import make_ca

    return make_ca(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="session")
def rogue_ca(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """Another CA with a valid-looking 127.0.0.1 certificate: what a MITM would present."""
    from tls_certs import make_ca

    return make_ca(tmp_path_factory.mktemp("rogue-ca"), name="attacker CA")
