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
from live_fleet import LiveDevice, LiveServer, free_port

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
    agent = Agent(
        server.url, tmp_path / "agent", server.token(), profile, insecure_first_use=True
    )
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


# --- a TPM quote over the measured agent build (Debian's swtpm and tpm2-tools) ---------------

TPM_TOOLS = ("swtpm", "tpm2_createek", "tpm2_createak", "tpm2_quote", "tpm2_checkquote")


@pytest.fixture
def swtpm(tmp_path: Path) -> Iterator[str]:
    """A software TPM 2.0 on loopback; yields its TCTI string for tpm2-tools."""
    import subprocess
    import time

    missing = [t for t in TPM_TOOLS if shutil.which(t) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (apt install swtpm swtpm-tools tpm2-tools)")
    import socket

    def listening(p: int) -> bool:
        with socket.socket() as s:
            s.settimeout(0.2)
            return s.connect_ex(("127.0.0.1", p)) == 0

    # free_port() checks only the server port and the TCTI finds the control channel at port + 1,
    # so another test may hold port + 1 (swtpm then exits); a fixed sleep also raced a loaded
    # machine's start-up. Wait until both ports answer, and take new ports if swtpm died.
    proc: subprocess.Popen[bytes] | None = None
    for _attempt in range(5):
        port = free_port()
        ctrl = port + 1
        state = tmp_path / f"tpm-state-{_attempt}"
        state.mkdir()
        proc = subprocess.Popen(
            ["swtpm", "socket", "--tpm2", "--tpmstate", f"dir={state}",
             "--server", f"type=tcp,port={port},bindaddr=127.0.0.1",
             "--ctrl", f"type=tcp,port={ctrl},bindaddr=127.0.0.1",
             "--flags", "not-need-init,startup-clear"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 20
        while proc.poll() is None and time.monotonic() < deadline:
            if listening(port) and listening(ctrl):
                break
            time.sleep(0.05)
        if proc.poll() is None and listening(port) and listening(ctrl):
            break
        proc.kill()
        proc.wait(timeout=10)
        proc = None
    if proc is None:
        pytest.fail("swtpm did not start listening on loopback after 5 tries")
    try:
        yield f"swtpm:host=127.0.0.1,port={port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.slow
def test_a_tpm_quote_binds_the_measured_build_to_the_servers_nonce(swtpm, tmp_path):
    from edgeloop.agent import TpmAttestor, expected_pcr, verify_quote
    from edgeloop.errors import SecurityError

    tpm = TpmAttestor(tmp_path / "tpm", tcti=swtpm)
    ak = tpm.enroll()  # the server would record this at enrollment
    build = package_build_hash()
    tpm.measure(build)  # what measured boot does for the agent's files
    nonce = bytes.fromhex("5eed") * 8

    evidence = tpm.attest(nonce)

    assert evidence.hardware_rooted and evidence.quote and evidence.signature
    verify_quote(evidence, ak, 16, expected_pcr(build))  # genuine: passes
    with pytest.raises(SecurityError, match="PCR 16"):
        verify_quote(evidence, ak, 16, expected_pcr(OTHER))  # another build was measured
    replay = type(evidence)(**{**evidence.__dict__, "nonce": b"old nonce"})
    with pytest.raises(SecurityError, match="TPM quote refused"):
        verify_quote(replay, ak, 16, expected_pcr(build))  # a quote for another nonce
    forged = type(evidence)(**{**evidence.__dict__, "signature": evidence.signature[:-1] + b"\0"})
    with pytest.raises(SecurityError, match="TPM quote refused"):
        verify_quote(forged, ak, 16, expected_pcr(build))
