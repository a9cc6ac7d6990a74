"""A device's Flower SuperNode: ``flower-supernode`` as a child process of the agent, over TLS
with the fleet's CA, authenticated with the node key derived from the device key.

::

    node = SuperNode(signing_key, "127.0.0.1:9093", ca_pem, work_dir)
    node_id = node.start()          # Flower's node id once the SuperLink activated it
    node.stop()                     # after the run; the key file is removed

The private node key is written (0600) into a private directory under ``work_dir`` only while
the SuperNode runs. A SuperLink that has not registered the key (a device not enrolled, or
revoked) refuses to activate the node: :meth:`SuperNode.start` raises with Flower's reason
(Flower gives up at once on a refusal). A SuperLink that goes away (restarting) is retried for
``reconnect_s`` seconds before the SuperNode gives up and exits.
Runtime dependency installation stays disabled. Standard library and ``cryptography`` only.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgeloop._io import atomic_write_bytes
from edgeloop.errors import AgentError, InputError, MissingExtraError
from edgeloop.federated.device._join import node_key, node_key_openssh
from edgeloop.federated.device._process import stop_tree

__all__ = ["SuperNode"]

_NODE_ID = re.compile(rb"SuperNode ID: (\d+)")
_CONFIG_KEY = re.compile(r"^[a-z][a-z0-9\-]{0,63}$")
_ADDRESS = re.compile(r"^[A-Za-z0-9.\-]{1,253}:\d{1,5}$")


def _executable() -> str:
    here = Path(sys.executable).parent / "flower-supernode"
    found = str(here) if here.exists() else shutil.which("flower-supernode")
    if found is None:
        raise MissingExtraError("flower-supernode not found: pip install 'edgeloop[federated]'")
    return found


class SuperNode:
    """``flower-supernode`` as a child process (module docstring)."""

    def __init__(self, signing_key: Ed25519PrivateKey, superlink: str, ca_pem: str | Path,
                 work_dir: str | Path, *,
                 node_config: dict[str, str | int | float] | None = None,
                 reconnect_s: float = 120.0) -> None:
        if not _ADDRESS.match(superlink):
            raise InputError(f"SuperLink address {superlink!r:.80}: expected HOST:PORT")
        if not (isinstance(reconnect_s, int | float) and 0 < reconnect_s <= 86_400):
            raise InputError(f"reconnect_s {reconnect_s!r:.40}: expected 0 < s <= 86400")
        self.reconnect_s = float(reconnect_s)
        self.ca_pem = Path(ca_pem).resolve()
        if not self.ca_pem.is_file():
            raise InputError(f"CA {str(ca_pem)!r}: expected a PEM file")
        self.superlink = superlink
        self.work_dir = Path(work_dir).resolve()
        self._key = signing_key
        self.process: subprocess.Popen[bytes] | None = None
        self._dir: Path | None = None
        self.node_id: int | None = None
        self.node_config = dict(node_config or {})
        for k, v in self.node_config.items():
            if not _CONFIG_KEY.match(k) or (isinstance(v, str) and ("'" in v or "\n" in v)):
                raise InputError(f"node config {k!r:.40}: expected a plain key and a value "
                                 "without quotes or newlines")

    @property
    def log_file(self) -> Path:
        return self.work_dir / "supernode.log"

    def _log(self) -> bytes:
        try:
            return self.log_file.read_bytes()
        except OSError:
            return b""

    def start(self, timeout_s: float = 60.0) -> int:
        """Start and wait until the SuperLink activated this node; its Flower node id."""
        if self.process is not None and self.process.poll() is None:
            raise AgentError("the SuperNode is already running")
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self._dir = Path(tempfile.mkdtemp(prefix="supernode-", dir=self.work_dir))
        key_file = self._dir / "node.key"
        atomic_write_bytes(key_file, node_key_openssh(node_key(self._key)), 0o600)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        cmd = [_executable(), "--superlink", self.superlink, "--root-certificates",
               str(self.ca_pem), "--auth-supernode-private-key", str(key_file),
               "--port", str(port), "--max-retries", "1000",
               "--max-wait-time", str(max(timeout_s, self.reconnect_s))]
        if self.node_config:  # Flower's "key=value key='text'" form (checked in __init__)
            cmd += ["--node-config", " ".join(
                f"{k}='{v}'" if isinstance(v, str) else f"{k}={v}"
                for k, v in self.node_config.items())]
        env = {**os.environ, "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1"}
        start = len(self._log())
        with open(self.log_file, "ab") as log:
            self.process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, cwd=self._dir, env=env,
                                            start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = _NODE_ID.search(self._log()[start:])
            if found:
                self.node_id = int(found.group(1))
                return self.node_id
            if self.process.poll() is not None:
                code = self.process.returncode
                self.stop()
                reason = [line.strip() for line in self._log()[start:].decode(
                    errors="replace").splitlines() if "code:" in line or "Failed" in line]
                raise AgentError(f"flower-supernode exited with {code}: "
                                 f"{' '.join(reason[-2:]) or 'see ' + str(self.log_file)}")
            time.sleep(0.2)
        self.stop()
        raise AgentError(f"SuperNode not activated by {self.superlink} after {timeout_s:g} s")

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the SuperNode with everything it started (its ``flower-superexec`` and the
        ``flwr-clientapp`` processes: ``stop_tree``) and remove its key file."""
        process, self.process = self.process, None
        if process is not None:
            stop_tree(process, timeout_s)
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None
