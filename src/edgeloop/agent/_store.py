"""The agent's state directory: keys, identity, the state pointer and the two slots.

::

    STATE_DIR/
      keys/signing.pem       Ed25519: signs every request to the server      (0600)
      keys/encryption.pem    X25519: bundles are encrypted to it              (0600)
      identity.json          device id, server URL, server key (after enrollment)
      state.json             the pointer: active slot, known-good slot, trial (see _state)
      slots/a/bundle.elb     a verified bundle, still encrypted as downloaded
      slots/b/bundle.elb
      tuf/                   the update client's trusted metadata and download cache
      personal/head.json     the personal head fitted here (HMAC under a device key; 0600)

With ``blobs`` (the simulator's light mode: thousands of devices in one process and on one
disk), a slot is a hard link to a content-addressed copy ``BLOBS/<sha256>`` shared by every
device that holds the same bundle; a device still reads, verifies and clears its own slots.

Every file is written to a temp name and renamed. Writes go through ``writer`` so tests can
inject a full disk or a crash between two steps.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from edgeloop._io import atomic_write_bytes, read_bytes
from edgeloop.agent._state import SLOTS, AgentState
from edgeloop.errors import AgentError, FileError

__all__ = ["StateDir", "Writer"]

Writer = Callable[[Path, bytes, "int | None"], None]
PRIVATE = 0o600


def _default_writer(path: Path, data: bytes, mode: int | None) -> None:
    atomic_write_bytes(path, data, mode)


class StateDir:
    def __init__(
        self, root: str | Path, writer: Writer | None = None, blobs: str | Path | None = None
    ) -> None:
        self.root = Path(root)
        self.write: Writer = writer or _default_writer
        self.blobs = None if blobs is None else Path(blobs)
        try:
            self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
            if self.blobs is not None:
                self.blobs.mkdir(parents=True, exist_ok=True, mode=0o700)
            for sub in ("keys", "slots/a", "slots/b", "tuf", "personal"):
                (self.root / sub).mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as e:
            raise AgentError(f"cannot create agent state dir {str(self.root)!r}: {e}") from e

    # --- paths ---------------------------------------------------------------------------
    @property
    def state_file(self) -> Path:
        return self.root / "state.json"

    @property
    def identity_file(self) -> Path:
        return self.root / "identity.json"

    @property
    def personal_file(self) -> Path:
        return self.root / "personal" / "head.json"

    @property
    def tuf_dir(self) -> Path:
        return self.root / "tuf"

    def slot_path(self, slot: str) -> Path:
        if slot not in SLOTS:
            raise AgentError(f"slot {slot!r} is not one of {SLOTS}")
        return self.root / "slots" / slot / "bundle.elb"

    # --- state pointer -------------------------------------------------------------------
    def load_state(self) -> AgentState:
        if not self.state_file.exists():
            return AgentState()
        return AgentState.from_json(read_bytes(self.state_file, "agent state"))

    def save_state(self, state: AgentState) -> None:
        """The one atomic switch: temp file, fsync, rename over state.json."""
        self.write(self.state_file, state.to_json().encode(), None)

    # --- slots ---------------------------------------------------------------------------
    def write_slot(self, slot: str, data: bytes) -> Path:
        path = self.slot_path(slot)
        if self.blobs is None:
            self.write(path, data, PRIVATE)
            return path
        blob = self.blobs / hashlib.sha256(data).hexdigest()
        link = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            if not blob.exists():
                # the first device to link its copy in place wins; a racing one links to it
                self.write(link, data, PRIVATE)
                with contextlib.suppress(FileExistsError):
                    os.link(link, blob)
                link.unlink()
            os.link(blob, link)
            os.replace(link, path)  # the slot now names the shared copy
        except OSError as e:
            link.unlink(missing_ok=True)
            raise FileError(f"cannot link slot {slot} to the shared bundle {blob.name}: {e}") from e
        return path

    def clear_slot(self, slot: str) -> None:
        self.slot_path(slot).unlink(missing_ok=True)

    def remove_stray_temps(self) -> int:
        """Temp files a crash left behind (``.name.XXXX.tmp``); they are never referenced."""
        n = 0
        for p in self.root.rglob(".*.tmp"):
            with contextlib.suppress(OSError):
                p.unlink()
                n += 1
        return n

    def free_bytes(self) -> int:
        return shutil.disk_usage(self.root).free

    # --- identity and keys ---------------------------------------------------------------
    def load_identity(self) -> dict[str, Any] | None:
        if not self.identity_file.exists():
            return None
        try:
            data = json.loads(read_bytes(self.identity_file, "agent identity"))
        except ValueError as e:
            raise AgentError(f"identity file {str(self.identity_file)!r} is not JSON") from e
        if not isinstance(data, dict) or "device_id" not in data:
            raise AgentError(f"identity file {str(self.identity_file)!r} lacks 'device_id'")
        return data

    def save_identity(self, identity: dict[str, Any]) -> None:
        self.write(self.identity_file, json.dumps(identity, indent=2).encode(), PRIVATE)

    def keys(self) -> tuple[Ed25519PrivateKey, X25519PrivateKey]:
        """This device's keys, generated on first use and kept (0600) in ``keys/``."""
        sign_path = self.root / "keys" / "signing.pem"
        enc_path = self.root / "keys" / "encryption.pem"
        signing = self._load_or_create(sign_path, Ed25519PrivateKey.generate)
        encryption = self._load_or_create(enc_path, X25519PrivateKey.generate)
        if not isinstance(signing, Ed25519PrivateKey):
            raise AgentError(f"{str(sign_path)!r}: expected an Ed25519 private key")
        if not isinstance(encryption, X25519PrivateKey):
            raise AgentError(f"{str(enc_path)!r}: expected an X25519 private key")
        return signing, encryption

    def _load_or_create(
        self, path: Path, generate: Callable[[], Ed25519PrivateKey | X25519PrivateKey]
    ) -> Ed25519PrivateKey | X25519PrivateKey:
        if path.exists():
            try:
                key = serialization.load_pem_private_key(read_bytes(path, "device key"), None)
            except (FileError, ValueError, TypeError) as e:
                raise AgentError(f"device key {str(path)!r} cannot be read ({e})") from e
            if not isinstance(key, Ed25519PrivateKey | X25519PrivateKey):
                raise AgentError(f"device key {str(path)!r} has type {type(key).__name__}")
            if os.stat(path).st_mode & 0o077:
                os.chmod(path, PRIVATE)
            return key
        key = generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        self.write(path, pem, PRIVATE)
        return key
