"""The provisioning file: the trust a device image carries before it talks to any network.

``edgeloop fleet provision`` writes it (0600: it holds an enrollment token); ``edgeloop agent
--provision FILE`` pins it. It holds the TUF root (which names the release keys and, since
issue 13, the director key), the director key the server had when the file was written (for a
root that does not name one yet), the server URL, the CA certificate that signed the server's
TLS certificate, and the enrollment token. See docs/security.md ("Provisioned trust").
"""

from __future__ import annotations

import json
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from edgeloop._io import atomic_write_bytes, read_bytes
from edgeloop.artifacts import Artifact
from edgeloop.errors import InputError

__all__ = ["MAX_PROVISIONING_BYTES", "Provisioning", "load_provisioning", "tls_context"]

MAX_PROVISIONING_BYTES = 1 << 20


def _need(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


@dataclass(frozen=True)
class Provisioning(Artifact):
    """What a device pins: ``tuf_root`` (signed root metadata), ``director_key`` (TUF key dict),
    ``server_url``, ``ca_pem`` (None: the server speaks plain HTTP) and ``enroll_token``."""

    KIND: ClassVar[str] = "provisioning"
    server_url: str
    tuf_root: dict[str, Any]
    director_key: dict[str, Any]
    director_keyid: str
    ca_pem: str | None = None
    enroll_token: str | None = None
    labels: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _need(
            isinstance(self.server_url, str)
            and self.server_url.startswith(("http://", "https://")),
            f"server_url {self.server_url!r}: expected an http:// or https:// URL",
        )
        _need(isinstance(self.tuf_root, dict), "tuf_root: expected signed root metadata")
        _need(isinstance(self.director_key, dict), "director_key: expected a TUF key object")
        _need(isinstance(self.director_keyid, str), "director_keyid: expected hex text")
        _need(
            self.ca_pem is None
            or (isinstance(self.ca_pem, str) and "BEGIN CERTIFICATE" in self.ca_pem),
            "ca_pem: expected a PEM certificate or null",
        )
        _need(
            self.enroll_token is None or isinstance(self.enroll_token, str),
            "enroll_token: expected text or null",
        )
        if self.ca_pem is None:
            return
        _need(
            self.server_url.startswith("https://"),
            f"server_url {self.server_url!r}: a CA is pinned, so expected https://",
        )

    def root_bytes(self) -> bytes:
        """The pinned root as the bytes TUF checks (canonical JSON of the signed metadata)."""
        return json.dumps(self.tuf_root).encode()

    def save(self, path: str | Path) -> Path:
        """Write the file atomically, readable by its owner only (it holds a token)."""
        p = Path(path)
        atomic_write_bytes(p, (self.to_json() + "\n").encode(), mode=0o600)
        return p


def load_provisioning(path: str | Path) -> Provisioning:
    """Read and check a provisioning file (InputError naming the file and the field)."""
    data = read_bytes(path, "provisioning file")
    if len(data) > MAX_PROVISIONING_BYTES:
        raise InputError(
            f"provisioning file {str(path)!r} is {len(data)} bytes, over {MAX_PROVISIONING_BYTES}"
        )
    try:
        return Provisioning.from_dict(json.loads(data))
    except (ValueError, TypeError, InputError) as e:
        raise InputError(f"provisioning file {str(path)!r}: {e}") from e


def tls_context(ca_pem: str) -> ssl.SSLContext:
    """A client TLS context that trusts ``ca_pem`` only (not the system's CAs): a pinned CA."""
    try:
        return ssl.create_default_context(cadata=ca_pem)
    except (ssl.SSLError, ValueError) as e:
        raise InputError(f"pinned CA certificate is not usable: {e}") from e
