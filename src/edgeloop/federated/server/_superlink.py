"""A Flower SuperLink beside the fleet server: ``flower-superlink`` as a child process, over
TLS with the fleet's certificate and CA, with SuperNode authentication on.

::

    with SuperLink(cert_pem, key_pem, ca_pem, state_dir, port=0) as link:
        link.url                                  # https://127.0.0.1:PORT (Fleet + Control API)
        link.restart()                            # a SuperLink restart, same port and database
    link.register_device(device_key, binding, device_id, revoked=False)   # -> Flower node id

There is no insecure mode: Flower's node authentication needs TLS, and edgeloop's deployments
only ever run with it. The SuperLink's state lives in ``state_dir/superlink.db`` (so a restart
keeps it); its log in ``state_dir/superlink.log``. It is ready when a TLS handshake that
verifies its certificate against the CA succeeds on its port.

Node keys reach the SuperLink only through :meth:`SuperLink.register_device`: the device's
signed binding (``federated.device.bind_node_key``) must verify against the key the device
enrolled with, and a revoked device is refused, so only enrolled, non-revoked devices' SuperNodes
can connect. Registration goes through the SuperLink's Control API (Flower's
``ControlHttpClient`` over the same TLS, the CA pinned).
"""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edgeloop.errors import AuthError, FleetError, InputError, MissingExtraError
from edgeloop.federated.device import kill_tree, stop_tree, verify_node_binding

__all__ = ["SuperLink", "kill_group", "superlink_command"]


def _executable() -> str:
    here = Path(sys.executable).parent / "flower-superlink"
    found = str(here) if here.exists() else shutil.which("flower-superlink")
    if found is None:
        raise MissingExtraError("flower-superlink not found: pip install 'edgeloop[federated]'")
    return found


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def kill_group(pid: int) -> None:
    """Kill a SuperLink that is not this process's child (a pid file names it) with what it
    started: its process group, its ``flower-superexec`` (a session of its own) and that one's
    ``flwr-serverapp`` processes (``federated.device.kill_tree``)."""
    kill_tree(pid)


def superlink_command(cert_pem: Path, key_pem: Path, ca_pem: Path, database: Path, *,
                      host: str, port: int, executable: str = "flower-superlink") -> list[str]:
    """The ``flower-superlink`` command line: TLS, SuperNode authentication, one port."""
    return [executable, "--ssl-certfile", str(cert_pem), "--ssl-keyfile", str(key_pem),
            "--ssl-ca-certfile", str(ca_pem), "--enable-supernode-auth",
            "--host", host, "--port", str(port), "--database", str(database)]


class SuperLink:
    """``flower-superlink`` as a child process (module docstring)."""

    def __init__(self, cert_pem: str | Path, key_pem: str | Path, ca_pem: str | Path,
                 state_dir: str | Path, *, host: str = "127.0.0.1", port: int = 0) -> None:
        # absolute: the SuperLink runs in state_dir
        self.cert_pem, self.key_pem, self.ca_pem = (Path(p).resolve()
                                                    for p in (cert_pem, key_pem, ca_pem))
        for flag, path in (("--tls-cert", self.cert_pem), ("--tls-key", self.key_pem),
                           ("--tls-ca", self.ca_pem)):
            if not path.is_file():
                raise InputError(f"{flag} {str(path)!r}: expected a PEM file")
        if not 0 <= port <= 65535:
            raise InputError(f"--port {port!r}: expected 0..65535 (0: a free port)")
        self.state_dir = Path(state_dir).resolve()
        self.host = host
        self.port = port or _free_port(host)
        self.process: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self.closed = False  # close(): stopped for good, never started again

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.state_dir / "superlink.log"

    def command(self) -> list[str]:
        return superlink_command(self.cert_pem, self.key_pem, self.ca_pem,
                                 self.state_dir / "superlink.db", host=self.host,
                                 port=self.port, executable=_executable())

    def _log_tail(self, lines: int = 5) -> str:
        try:
            text = self.log_file.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(line.strip() for line in text[-lines:])

    def ready(self) -> bool:
        """A TLS handshake verifying the SuperLink's certificate against the CA succeeds."""
        context = ssl.create_default_context(cafile=str(self.ca_pem))
        try:
            with socket.create_connection((self.host, self.port), timeout=2) as raw, \
                    context.wrap_socket(raw, server_hostname=self.host):
                return True
        except (OSError, ssl.SSLError):
            return False

    def start(self, timeout_s: float = 60.0) -> SuperLink:
        if self.closed:
            raise FleetError(f"the SuperLink on {self.url} was closed: it is not started again")
        if self.process is not None and self.process.poll() is None:
            return self
        self.state_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1"}
        with open(self.log_file, "ab") as log:
            self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, cwd=self.state_dir,
                                            env=env, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                code = self.process.returncode
                self.process = None
                raise FleetError(f"flower-superlink exited with {code}: {self._log_tail()}")
            if self.ready():
                return self
            time.sleep(0.2)
        self.stop()
        raise FleetError(f"flower-superlink not ready on {self.url} after {timeout_s:g} s: "
                         f"{self._log_tail()}")

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the SuperLink with everything it started (``federated.device.stop_tree``):
        its ``flower-superexec`` runs in a session of its own and starts the ``flwr-serverapp``
        processes, so the SuperLink's process group alone would leave them running. Reaped
        too when the SuperLink itself already exited."""
        process, self.process = self.process, None
        if process is not None:
            stop_tree(process, timeout_s)

    @property
    def pid(self) -> int | None:
        """The running ``flower-superlink``'s process id (its process group's too)."""
        return self.process.pid if self.running and self.process is not None else None

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop for good: a run waiting on this SuperLink (``deploy`` in another thread) fails
        instead of starting it again (a process shutting down)."""
        self.closed = True
        self.stop(timeout_s)

    def restart(self, timeout_s: float = 60.0) -> None:
        """Stop and start again on the same port, with the same database."""
        self.stop()
        self.restarts += 1
        self.start(timeout_s)

    def _control(self) -> Any:
        from flwr.supercore.control import ControlHttpClient
        from flwr.supercore.interceptors import RuntimeVersionHttpInterceptor

        if not self.running:
            raise FleetError(f"SuperLink on {self.url} is not running")
        return ControlHttpClient.from_server_address(
            server_address=f"{self.host}:{self.port}", insecure=False,
            root_certificates=self.ca_pem.read_bytes(),
            interceptors=[RuntimeVersionHttpInterceptor(component_name="flwr CLI")])

    def register_device(self, device_key: Ed25519PublicKey, binding: object, device_id: str,
                        *, revoked: bool) -> int:
        """Register an enrolled device's node key (its signed ``binding``); returns Flower's
        node id. A revoked device, or a binding its enrolled key did not sign, is refused."""
        if revoked:
            raise AuthError(f"device {device_id!r:.60} is revoked: its node key is not "
                            "registered")
        public = serialization.load_ssh_public_key(
            verify_node_binding(device_key, binding, device_id).encode())
        assert isinstance(public, ec.EllipticCurvePublicKey)  # verify_node_binding checked
        from flwr.proto.control_pb2 import RegisterNodeRequest
        from flwr.supercore.primitives.asymmetric import public_key_to_bytes

        client = self._control()
        try:
            answer = client.RegisterNode(request=RegisterNodeRequest(
                public_key=public_key_to_bytes(public), name=device_id[:64]))
        except Exception as e:  # Flower's transport and API errors: say which, no traceback
            raise FleetError(f"SuperLink refused node key of {device_id!r:.60}: "
                             f"{type(e).__name__}: {str(e)[:200]}") from None
        finally:
            client.close()
        return int(answer.node_id)

    def nodes(self) -> dict[int, str]:
        """The SuperNodes still registered (not unregistered): Flower node id -> name (the
        device id)."""
        from flwr.proto.control_pb2 import ListNodesRequest

        client = self._control()
        try:
            answer = client.ListNodes(request=ListNodesRequest())
        finally:
            client.close()
        return {int(n.node_id): str(n.name) for n in answer.nodes_info
                if n.status != "unregistered"}

    def unregister(self, node_id: int) -> None:
        """Remove a node (a device revoked during a run)."""
        from flwr.proto.control_pb2 import UnregisterNodeRequest

        client = self._control()
        try:
            client.UnregisterNode(request=UnregisterNodeRequest(node_id=node_id))
        finally:
            client.close()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def __enter__(self) -> SuperLink:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
