"""A Flower SuperLink beside the fleet server: TLS with the fleet's CA, SuperNode
authentication on, restartable on the same port."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

import pytest

pytest.importorskip("flwr")

from edgeloop.errors import InputError  # noqa: E402
from edgeloop.federated.server import SuperLink, superlink_command  # noqa: E402
from tls_certs import make_ca  # noqa: E402


def test_the_command_line_is_tls_with_node_authentication() -> None:
    cmd = superlink_command(Path("c.pem"), Path("k.pem"), Path("ca.pem"), Path("s.db"),
                            host="127.0.0.1", port=9093)
    assert "--enable-supernode-auth" in cmd and "--insecure" not in cmd
    assert cmd[cmd.index("--ssl-ca-certfile") + 1] == "ca.pem"
    assert cmd[cmd.index("--port") + 1] == "9093"


def test_supernode_input_is_checked(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from edgeloop.federated.device import SuperNode

    ca = make_ca(tmp_path / "ca")
    with pytest.raises(InputError, match="HOST:PORT"):
        SuperNode(Ed25519PrivateKey.generate(), "http://x; rm", ca.ca_pem, tmp_path)
    with pytest.raises(InputError, match="CA"):
        SuperNode(Ed25519PrivateKey.generate(), "127.0.0.1:1", tmp_path / "no.pem", tmp_path)


def test_missing_certificates_and_bad_ports_are_refused(tmp_path: Path) -> None:
    ca = make_ca(tmp_path / "ca")
    with pytest.raises(InputError, match="--tls-key"):
        SuperLink(ca.cert_pem, tmp_path / "nope.key", ca.ca_pem, tmp_path / "sl")
    with pytest.raises(InputError, match="--port"):
        SuperLink(ca.cert_pem, ca.key_pem, ca.ca_pem, tmp_path / "sl", port=70000)


def test_relative_paths_are_resolved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_ca(tmp_path / "ca")
    monkeypatch.chdir(tmp_path)  # the SuperLink itself runs in its state directory
    link = SuperLink(Path("ca/server.pem"), Path("ca/server.key"), Path("ca/ca.pem"), "sl")
    cmd = link.command()
    assert all(Path(cmd[cmd.index(flag) + 1]).is_absolute() for flag in
               ("--ssl-certfile", "--ssl-keyfile", "--ssl-ca-certfile", "--database"))


def _started_by(pid: int, seconds: float = 30.0) -> dict[tuple[int, int], int]:
    """The descendants of ``pid`` once it has started its Flower helper (flower-superexec)."""
    import time

    from edgeloop.federated.device._process import descendants

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = descendants(pid)
        if found:
            return found
        time.sleep(0.1)
    return {}


def _survivors(tree: dict[tuple[int, int], int], seconds: float = 5.0) -> list[int]:
    import time

    from edgeloop.federated.device._process import alive

    deadline = time.monotonic() + seconds
    while (left := [pid for pid, start in tree if alive((pid, start))]) and \
            time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def _handshake(port: int, cafile: Path) -> bool:
    context = ssl.create_default_context(cafile=str(cafile))
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
                context.wrap_socket(raw, server_hostname="127.0.0.1"):
            return True
    except ssl.SSLError:
        return False


@pytest.mark.slow
def test_superlink_serves_the_fleet_certificate_and_survives_a_restart(tmp_path: Path) -> None:
    ca, other = make_ca(tmp_path / "ca"), make_ca(tmp_path / "attacker", "another CA")
    with SuperLink(ca.cert_pem, ca.key_pem, ca.ca_pem, tmp_path / "sl") as link:
        assert link.running and link.url.startswith("https://127.0.0.1:")
        assert _handshake(link.port, ca.ca_pem)
        assert not _handshake(link.port, other.ca_pem)  # it is the fleet's certificate
        port = link.port
        link.restart()
        assert link.running and link.port == port and link.restarts == 1
        assert _handshake(link.port, ca.ca_pem)
        assert (tmp_path / "sl" / "superlink.db").exists()  # state kept across the restart
        process = link.process
        assert process is not None
        # its flower-superexec runs in a session of its own: not in the SuperLink's group
        helpers = _started_by(process.pid)
        assert helpers and any(group != process.pid for group in helpers.values())
    assert not link.running and process.poll() is not None
    assert _survivors(helpers) == []  # stop() reaped them too


@pytest.mark.slow
def test_only_enrolled_non_revoked_devices_node_keys_are_registered(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from edgeloop.errors import AuthError, IntegrityError
    from edgeloop.federated.device import bind_node_key

    ca = make_ca(tmp_path / "ca")
    good, revoked, stranger = (Ed25519PrivateKey.generate() for _ in range(3))
    with SuperLink(ca.cert_pem, ca.key_pem, ca.ca_pem, tmp_path / "sl") as link:
        node = link.register_device(good.public_key(), bind_node_key(good, "dev-1"), "dev-1",
                                    revoked=False)
        with pytest.raises(AuthError, match="revoked"):
            link.register_device(revoked.public_key(), bind_node_key(revoked, "dev-2"),
                                 "dev-2", revoked=True)
        with pytest.raises(IntegrityError):  # a stranger's key under dev-3's enrolled key
            link.register_device(good.public_key(), bind_node_key(stranger, "dev-3"),
                                 "dev-3", revoked=False)
        assert link.nodes() == {node: "dev-1"}
        link.unregister(node)
        assert link.nodes() == {}


@pytest.mark.slow
def test_a_revoked_devices_supernode_is_refused_an_enrolled_one_joins(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from edgeloop.errors import AgentError, AuthError
    from edgeloop.federated.device import SuperNode, bind_node_key

    ca = make_ca(tmp_path / "ca")
    enrolled, revoked = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    with SuperLink(ca.cert_pem, ca.key_pem, ca.ca_pem, tmp_path / "sl") as link:
        node_id = link.register_device(enrolled.public_key(), bind_node_key(enrolled, "dev-1"),
                                       "dev-1", revoked=False)
        with pytest.raises(AuthError):
            link.register_device(revoked.public_key(), bind_node_key(revoked, "dev-2"),
                                 "dev-2", revoked=True)
        address = f"127.0.0.1:{link.port}"
        good = SuperNode(enrolled, address, ca.ca_pem, tmp_path / "dev-1")
        bad = SuperNode(revoked, address, ca.ca_pem, tmp_path / "dev-2")
        helpers: dict[tuple[int, int], int] = {}
        try:
            assert good.start(timeout_s=60) == node_id and good.running
            assert good.process is not None
            helpers = _started_by(good.process.pid)  # its flower-superexec
            assert helpers
            with pytest.raises(AgentError, match="exited"):
                bad.start(timeout_s=60)
            assert not bad.running
        finally:
            good.stop()
            bad.stop()
        assert not good.running
        assert _survivors(helpers) == []
        assert not list((tmp_path / "dev-1").glob("supernode-*"))  # the key file is gone


@pytest.mark.slow
def test_cli_superlink_runs_until_terminated(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys
    import time

    ca = make_ca(tmp_path / "ca")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
    proc = subprocess.Popen([sys.executable, "-m", "edgeloop", "fl", "superlink", "--tls-cert",
                             str(ca.cert_pem), "--tls-key", str(ca.key_pem), "--tls-ca",
                             str(ca.ca_pem), "--port", "0", "--state", "sl"], cwd=tmp_path,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "SuperLink on https://127.0.0.1:" in line, line + (proc.stderr.read()
                                                                  if proc.stderr else "")
        port = int(line.split("127.0.0.1:")[1].split()[0])
        assert _handshake(port, ca.ca_pem)
        proc.terminate()
        assert proc.wait(30) == 0
        time.sleep(0.5)
        with pytest.raises(OSError):  # the SuperLink went with it
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
    finally:
        from edgeloop.federated.device import stop_tree

        stop_tree(proc, timeout_s=10)  # with its SuperLink (a session of its own), if left


def test_cli_superlink_refuses_a_missing_certificate(tmp_path: Path) -> None:
    from conftest import run_edgeloop

    r = run_edgeloop(["fl", "superlink", "--tls-cert", "no.pem", "--tls-key", "no.key",
                      "--tls-ca", "ca.pem"], cwd=tmp_path)
    assert r.returncode != 0 and "--tls-cert" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "superlink").exists()
