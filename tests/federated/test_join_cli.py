"""``edgeloop fl node-key``: an enrolled agent's Flower node key, bound to its device key."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from edgeloop.agent import StateDir
from edgeloop.federated.device import node_public_openssh, verify_node_binding

Cli = Callable[..., subprocess.CompletedProcess[str]]


def test_node_key_of_an_enrolled_agent(tmp_path: Path, cli: Cli) -> None:
    store = StateDir(tmp_path / "state")
    signing, _ = store.keys()
    store.save_identity({"device_id": "dev-7"})
    r = cli("fl", "node-key", "--state", "state", "--key-out", "node.key", "--json")
    assert r.returncode == 0, r.stderr
    binding = json.loads(r.stdout)
    public = verify_node_binding(signing.public_key(), binding, "dev-7")
    key = serialization.load_ssh_private_key((tmp_path / "node.key").read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and node_public_openssh(key) == public
    assert (tmp_path / "node.key").stat().st_mode & 0o077 == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["node.key", "state"]


def test_node_key_refuses_a_directory_that_is_not_an_enrolled_agent(tmp_path: Path,
                                                                   cli: Cli) -> None:
    (tmp_path / "empty").mkdir()
    r = cli("fl", "node-key", "--state", "empty", "--key-out", "node.key")
    assert r.returncode != 0 and "keys/signing.pem" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    StateDir(tmp_path / "fresh").keys()
    r = cli("fl", "node-key", "--state", "fresh", "--key-out", "node.key")
    assert r.returncode != 0 and "not enrolled" in r.stderr
    assert not (tmp_path / "node.key").exists()


def test_agent_label_and_federated_options_check_their_input(tmp_path: Path, cli: Cli) -> None:
    """``edgeloop agent --label KEY=VALUE``: a bad label is one line naming it, before the
    state directory is made; ``--federated`` without a pinned CA (no provisioning) says why."""
    r = cli("agent", "--state", "s1", "--label", "north", "--once")
    assert r.returncode != 0 and "--label 'north': expected KEY=VALUE" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "s1").exists()
    r = cli("agent", "--state", "s2", "--server", "http://127.0.0.1:9", "--federated", "--once")
    assert r.returncode != 0 and "pinned over TLS" in r.stderr, r.stderr
