"""The demo's fleet server: ``edgeloop server`` over TLS in a child process on 127.0.0.1.

The demo makes its own CA (:func:`~edgeloop.demo.make_local_ca`), serves HTTPS with a
certificate it signed, and provisions every device with that CA, the TUF root and the director
key (``AdminClient.provision``): the agents trust nothing the network tells them.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeloop._io import atomic_write_bytes
from edgeloop.demo._context import MODEL
from edgeloop.errors import FleetError, InputError

if TYPE_CHECKING:
    import ssl

    from edgeloop.client import AdminClient, MonitorClient
    from edgeloop.protocol import Provisioning

__all__ = ["DemoServer"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class DemoServer:
    """``edgeloop server`` (HTTPS) in a child process on 127.0.0.1, stopped when the demo ends."""

    def __init__(self, data: Path, poll_interval: float, extra: Sequence[str] = ()) -> None:
        from edgeloop.demo._tls import make_local_ca
        from edgeloop.protocol import tls_context

        self.data = data
        self.db_url = f"sqlite:///{data / 'edgeloop.db'}"
        self.port = _free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.ca = make_local_ca(data.parent / "tls", "edgeloop demo CA")
        self.verify: ssl.SSLContext = tls_context(self.ca.ca_pem.read_text())
        self.log = data.parent / "server.log"
        self.poll_interval = poll_interval
        self.extra = tuple(extra)  # more `edgeloop server` options (the closed loop's monitoring)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        import httpx

        self.data.mkdir(parents=True, exist_ok=True)
        args = [sys.executable, "-m", "edgeloop", "server", "--db", self.db_url]
        args += ["--data", str(self.data), "--port", str(self.port)]
        args += ["--poll-interval", str(self.poll_interval)]
        # the demo publishes through POST /v1/admin/releases, which signs the targets metadata
        # on the server: a trial server that holds every key (docs/security.md, "Fleet trust")
        args += ["--create-release-keys"]
        args += ["--tls-cert", str(self.ca.cert_pem), "--tls-key", str(self.ca.key_pem)]
        args += list(self.extra)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, EDGELOOP_DEBUG="")
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = self.log.read_text(errors="replace")[-2000:]
                raise FleetError(f"the fleet server exited with {self.proc.returncode}: {tail}")
            try:
                r = httpx.get(self.url + "/healthz", timeout=1, verify=self.verify)
                if r.status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise FleetError(f"the fleet server at {self.url} did not answer /healthz within 60 s")

    @property
    def admin_token(self) -> str:
        return (self.data / "admin-token").read_text().strip()

    def admin(self) -> AdminClient:
        """The admin client for this server (a long timeout: publishing packs bundles)."""
        from edgeloop.client import AdminClient

        return AdminClient(self.url, self.admin_token, timeout_s=120.0, verify=self.verify)

    def monitor(self) -> MonitorClient:
        """The monitoring client for this server."""
        from edgeloop.client import MonitorClient

        return MonitorClient(self.url, self.admin_token, timeout_s=120.0, verify=self.verify)

    def provisioning(self, uses: int) -> Provisioning:
        """What the demo's device images carry: the CA, TUF root, director key, a token."""
        return self.admin().provision(ca_pem=self.ca.ca_pem.read_text(), uses=uses)

    def pack(self, model: Path, card: Any, version: int, dest: Path,
             reference: Any = None, name: str = MODEL) -> Path:
        """Sign with the fleet's release key, encrypt to its fleet key, verify as a device
        would (against the signed root), and write ``dest`` atomically."""
        from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

        from edgeloop.bundle import load_public_key, load_signing_key, load_trust, pack, verify

        keys = self.data / "keys"
        fleet_pub = load_public_key(keys / "fleet.pub.pem")
        if not isinstance(fleet_pub, X25519PublicKey):
            raise InputError(f"{keys / 'fleet.pub.pem'} is not an X25519 encryption key")
        sign = load_signing_key(keys / "release.pem")
        blob = pack(model.read_bytes(), card, version, sign, [fleet_pub], name=name,
                    reference=reference)
        verify(blob, load_trust(keys / "root.json"))
        atomic_write_bytes(dest, blob)
        return dest

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)
