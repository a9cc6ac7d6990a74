"""Runtime integrity of the agent (issue 13): the agent reports a hash of its installed files at
enrollment and check-in, and ``edgeloop server --require-agent-build`` refuses other builds.
This catches unapproved or broken installs, not a compromised device (docs/security.md)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

import edgeloop
from edgeloop.agent import Agent, SoftwareAttestor, package_build_hash
from edgeloop.artifacts import DeviceProfile
from live_fleet import LiveDevice, LiveServer

OTHER = "ab" * 32


def test_the_build_hash_changes_with_any_file_and_ignores_bytecode(tmp_path: Path):
    root = tmp_path / "edgeloop"
    shutil.copytree(Path(edgeloop.__file__).parent, root, ignore=shutil.ignore_patterns("*.pyc"))
    before = package_build_hash(root)
    (root / "__pycache__").mkdir(exist_ok=True)
    (root / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\0")
    assert package_build_hash(root) == before
    agent_py = root / "agent" / "_agent.py"
    agent_py.write_text(agent_py.read_text() + "\n# edited on the device\n")
    assert package_build_hash(root) != before


def test_the_software_attestor_is_not_hardware_rooted():
    evidence = SoftwareAttestor().attest(b"nonce")
    assert evidence.measurement == package_build_hash()
    assert evidence.nonce == b"nonce" and evidence.hardware_rooted is False
    assert evidence.quote == b"" and evidence.signature == b""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    builds = f"{package_build_hash()},{'cd' * 32}"
    live = LiveServer(tmp_path_factory.mktemp("integrity"), "--require-agent-build", builds)
    live.start()
    try:
        yield live
    finally:
        live.stop()


@pytest.mark.slow
def test_a_real_agent_of_an_allowed_build_enrolls_and_checks_in(server, tmp_path):
    profile = DeviceProfile(name="x", source="measured", arch="x86_64", cpu_model="c")
    agent = Agent(server.url, tmp_path / "agent", server.token(), profile)
    try:
        agent.poll_sync()
    finally:
        agent.close()
    assert agent.poll_error is None, agent.poll_error
    rows = server.rows(
        "SELECT agent_build, last_seen FROM fleet_devices WHERE id = :d", d=agent.device_id
    )
    assert rows and rows[0][0] == package_build_hash() and rows[0][1] is not None


@pytest.mark.slow
def test_an_unapproved_build_cannot_enroll(server):
    before = server.snapshot()
    r = LiveDevice(server).enroll(server.token(), agent_build=OTHER)
    assert r.status_code == 403
    assert r.json()["detail"] == f"agent build {OTHER[:16]} is not one this server allows"
    after = server.snapshot()
    assert after["fleet_devices"] == before["fleet_devices"]
    # the token was not spent: the refusal changed nothing but the token the test made
    assert len(after["fleet_enroll_tokens"]) == len(before["fleet_enroll_tokens"]) + 1


@pytest.mark.slow
def test_a_build_that_changes_after_enrollment_is_refused_at_check_in(server):
    device = LiveDevice(server)
    assert device.enroll(server.token(), agent_build=package_build_hash()).status_code == 201
    before = server.snapshot()
    r = device.checkin(agent_build=OTHER)
    assert r.status_code == 403 and "not one this server allows" in r.json()["detail"]
    r = device.checkin()  # no hash at all: refused too
    assert r.status_code == 403
    assert server.snapshot() == before
    assert "Traceback" not in server.output
