"""Point 8 of issue 13, the smaller items, each with its test (the telemetry and dashboard ones
are in test_telemetry.py and test_dashboard_sessions.py)."""

from __future__ import annotations

import logging
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from edgeloop.agent import Agent
from edgeloop.artifacts import ModelCard
from edgeloop.bundle import Trust, load_signing_key, pack, parse_container
from edgeloop.bundle._format import build_container
from edgeloop.errors import BundleFormatError
from edgeloop.fleet import FleetSettings, create_app
from edgeloop.update import init_keys
from live_fleet import LiveDevice, LiveServer

DEEP = b"[" * 100_000 + b"]" * 100_000


def _model() -> bytes:
    from onnx_writer import FLOAT, model_bytes

    return model_bytes(
        [("Mul", ["x", "s"], ["y"])],
        [("x", FLOAT, ["n", 4])],
        [("y", FLOAT, ["n", 4])],
        {"s": np.array([2.0], dtype=np.float32)},
    )


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("keys") / "keys"
    init_keys(directory)
    return directory


@pytest.fixture(scope="module")
def deep_bundle(keys: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bundle whose signature section is JSON nested 100,000 deep (past Python's limit)."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    good = pack(
        _model(),
        ModelCard(name="m", sha256=""),
        1,
        load_signing_key(keys / "release.pem"),
        [X25519PrivateKey.generate().public_key()],
        name="m",
    )
    c = parse_container(good)
    path = tmp_path_factory.mktemp("deep") / "m-1.elb"
    path.write_bytes(build_container(c.manifest, DEEP, bytes(c.payload)))
    return path


def test_a_deeply_nested_signature_section_is_a_clean_bundle_error(deep_bundle, keys):
    from edgeloop.bundle import verify

    trust = Trust.from_root_bytes((keys / "root.json").read_bytes())
    with pytest.raises(BundleFormatError, match="signature section is not JSON"):
        verify(deep_bundle.read_bytes(), trust)


@pytest.mark.slow
@pytest.mark.parametrize("command", ["release", "verify"])
def test_the_cli_refuses_it_with_one_line_and_no_traceback(cli, deep_bundle, keys, command):
    if command == "release":
        result = cli("release", deep_bundle, "--repo", keys.parent / "repo", "--keys", keys)
    else:
        result = cli("verify", deep_bundle, "--trust", keys / "root.json")
    assert result.returncode != 0
    out = result.stdout + result.stderr
    assert "signature section is not JSON" in out
    assert "Traceback" not in out and "RecursionError" not in out.split("(")[0]


# --- the live server ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = LiveServer(tmp_path_factory.mktemp("small")).start()
    try:
        yield live
    finally:
        live.stop()


@pytest.mark.slow
def test_a_used_enrollment_token_does_not_name_the_device_that_used_it(server):
    token = server.token()
    first = LiveDevice(server)
    assert first.enroll(token).status_code == 201

    second = LiveDevice(server).enroll(token)

    assert second.status_code == 401
    assert second.json()["detail"] == "enrollment token was already used"
    assert first.device_id not in second.text


@pytest.mark.slow
def test_the_server_creates_its_database_for_its_owner_only(server):
    mode = stat.S_IMODE(os.stat(server.db_path).st_mode)
    assert mode == 0o600, oct(mode)
    for sidecar in (
        server.db_path.with_name("fleet.db-wal"),
        server.db_path.with_name("fleet.db-shm"),
    ):
        if sidecar.exists():
            assert stat.S_IMODE(sidecar.stat().st_mode) & 0o077 == 0, sidecar


def test_a_failing_timestamp_refresh_is_logged_and_retried(tmp_path, monkeypatch, caplog):
    calls: list[float] = []

    def broken(*args: object, **kw: object) -> bool:
        calls.append(time.monotonic())
        raise OSError("disk full")

    monkeypatch.setattr("edgeloop.fleet._app.refresh_timestamp_if_due", broken)
    monkeypatch.setattr("edgeloop.fleet._app._TIMESTAMP_CHECK_S", 0.05)
    settings = FleetSettings(
        db_url=f"sqlite:///{tmp_path / 'f.db'}", data_dir=tmp_path / "d", create_release_keys=True
    )
    with caplog.at_level(logging.ERROR, logger="edgeloop.fleet"), TestClient(create_app(settings)):
        deadline = time.monotonic() + 10
        while len(calls) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
    assert len(calls) >= 3  # it keeps trying
    logged = [r for r in caplog.records if "TUF timestamp refresh failed" in r.getMessage()]
    assert logged and logged[0].exc_info is not None and "disk full" in str(logged[0].exc_info[1])


def test_agent_once_run_repeatedly_keeps_a_fresh_install(tmp_path, keys):
    """``edgeloop agent --once`` is a start, one poll and a clean exit (``Agent.close``): a
    clean exit is not a crash, so a freshly installed version is not abandoned on the third run
    as "did not confirm after a restart"."""
    from datetime import datetime, timedelta, timezone

    from edgeloop.artifacts import sha256_bytes
    from edgeloop.protocol import Assignment, iso_time

    release = load_signing_key(keys / "release.pem")
    trust = Trust.from_keys([release.public_key()])
    state = tmp_path / "agent"
    agent = Agent(None, state, trust=trust)
    pub = agent.encryption_key.public_key()

    def install(version: int) -> None:
        data = pack(_model(), ModelCard(name="m", sha256=""), version, release, [pub], name="m")
        now = datetime.now(timezone.utc)
        assignment = Assignment(
            device_id="d-1", model="m", version=version, variant="fp32",
            target=f"m/{version}/m.elb", sha256=sha256_bytes(data), length=len(data),
            issued_at=iso_time(now), expires_at=iso_time(now + timedelta(hours=1)),
        )  # fmt: skip
        assert agent.install(data, assignment) is True

    install(1)
    agent.check_trial()
    install(2)  # on trial now
    agent.close()
    for _ in range(4):  # four more `--once` runs
        agent = Agent(None, state, trust=trust)
        assert agent.state.current is not None and agent.state.current.version == 2
        agent.close()
    crashed = Agent(None, state, trust=trust)  # a start that never exits cleanly ...
    del crashed
    again = Agent(None, state, trust=trust)  # ... and another: two unconfirmed starts
    assert again.state.current is not None and again.state.current.version == 1
