"""The device's pinned trust: what it was provisioned with, and the checks that use it.

A provisioned device (``Agent(provisioning=...)``, ``edgeloop agent --provision FILE``) holds
the TUF root, a director key, its server's URL and CA before it talks to the network; the file
is kept in the state directory (``provisioning.json``, 0600) so a restart pins the same trust.

* TLS: every connection trusts the pinned CA only (:attr:`PinnedTrust.verify`).
* Enrollment: the answer's TUF root and director key must agree with the pinned trust; a root
  newer than the pinned one is believed only once TUF walked to it through signed rotations.
* Assignments: signed by a director key the newest verified root names (its
  ``x-edgeloop-director`` field), else the pinned one (roots from before that field).

Without a provisioning file the agent refuses to enroll unless told ``insecure_first_use``
(trust on first use: it then believes whatever answers the first enrollment).
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edgeloop._io import read_bytes
from edgeloop.errors import EdgeloopError, TrustError
from edgeloop.protocol import Enrollment, Provisioning, load_provisioning, tls_context

__all__ = ["PROVISIONING_FILE", "PinnedTrust"]

PROVISIONING_FILE = "provisioning.json"


def _root_of(data: bytes) -> dict[str, Any]:
    return dict(json.loads(data))


def _version(root: Mapping[str, Any]) -> int:
    signed = root.get("signed")
    version = signed.get("version") if isinstance(signed, Mapping) else None
    return version if isinstance(version, int) and not isinstance(version, bool) else 0


class PinnedTrust:
    """The trust one agent pins: a :class:`Provisioning`, or trust on first use."""

    def __init__(
        self,
        state_dir: Path,
        provisioning: Provisioning | None,
        *,
        insecure_first_use: bool = False,
        tuf_root_path: Path,
        save: Callable[[Path, bytes], None],
    ) -> None:
        stored = state_dir / PROVISIONING_FILE
        if provisioning is None and stored.is_file():
            provisioning = load_provisioning(stored)
        elif provisioning is not None:
            save(stored, json.dumps(provisioning.to_dict(), indent=2).encode())
            if not tuf_root_path.is_file():  # the pinned root starts the TUF chain
                save(tuf_root_path, provisioning.root_bytes())
        self.provisioning = provisioning
        self.insecure_first_use = insecure_first_use
        self._tuf_root_path = tuf_root_path
        self.verify: ssl.SSLContext | bool = True
        if provisioning is not None and provisioning.ca_pem is not None:
            self.verify = tls_context(provisioning.ca_pem)

    @property
    def provisioned(self) -> bool:
        return self.provisioning is not None

    def may_enroll(self) -> None:
        if self.provisioning is None and not self.insecure_first_use:
            raise TrustError(
                "no provisioned trust: pass a provisioning file (`edgeloop fleet provision`, "
                "then `edgeloop agent --provision FILE`), or --insecure-first-use to believe "
                "the first server that answers"
            )

    def check_enrollment(self, enrollment: Enrollment, refresh: Callable[[], bytes]) -> None:
        """Refuse an enrollment answer that disagrees with the pinned trust (TrustError).

        ``refresh`` walks the TUF root chain from the pinned root and returns the newest
        verified root's bytes: how a legitimate rotation since provisioning is told apart from
        a swap.
        """
        if self.provisioning is None:
            return
        held = _root_of(read_bytes(self._tuf_root_path, "trusted TUF root"))
        offered = enrollment.tuf_root
        if offered != held:
            if _version(offered) > _version(held):
                try:
                    held = _root_of(refresh())
                except EdgeloopError as e:
                    raise TrustError(
                        f"enrollment answer carries TUF root version {_version(offered)}, newer "
                        f"than the pinned version {_version(held)}, and the update channel "
                        f"does not lead to it: {e}"
                    ) from e
            if offered != held:
                raise TrustError(
                    f"enrollment answer carries a TUF root (version {_version(offered)}) that "
                    f"differs from the trusted one (version {_version(held)}): refused"
                )
        keys = self.director_keys(named=self._named(held))
        if enrollment.director_keyid not in keys:
            raise TrustError(
                f"enrollment answer names director key {enrollment.director_keyid[:16]}; the "
                f"provisioned trust names {sorted(k[:16] for k in keys)}: refused"
            )

    @staticmethod
    def _named(root: Mapping[str, Any]) -> dict[str, Ed25519PublicKey]:
        from edgeloop.bundle import Trust

        return dict(Trust.from_root_bytes(json.dumps(root).encode()).director_keys)

    def director_keys(
        self,
        named: Mapping[str, Ed25519PublicKey],
        identity: Mapping[str, Any] | None = None,
    ) -> dict[str, Ed25519PublicKey]:
        """Keys that may sign assignments: those the root names, else the pinned one.

        ``named``: the newest verified root's director keys. A device on trust on first use
        falls back to the key its enrollment answer gave (``identity``).
        """
        if named:
            return dict(named)
        from edgeloop.bundle import ed25519_from_dict, key_id

        source = None
        if self.provisioning is not None:
            source = self.provisioning.director_key
        elif identity is not None:
            source = identity.get("director_key")
        if not isinstance(source, Mapping):
            return {}
        key = ed25519_from_dict(dict(source), "pinned director key")
        return {key_id(key): key}
