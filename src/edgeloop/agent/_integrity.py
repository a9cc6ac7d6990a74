"""What the agent says about its own build: a hash of its installed files, and where a TPM
quote over a measured boot plugs in.

:func:`package_build_hash` is the sha256 over every installed file of the ``edgeloop`` package
(sorted relative paths and each file's sha256; ``__pycache__`` and ``.pyc`` left out, as they
differ by interpreter and are rebuilt from the sources). The agent sends it at enrollment and at
every check-in (``agent_build``), and ``edgeloop server --require-agent-build HASH[,HASH]``
refuses any other build (403).

What that catches: an unapproved or broken install (a hand-edited file, a partial upgrade, a
build the fleet never approved). What it cannot catch: a compromised device, which can report
any hash it likes. That takes evidence the device's software cannot forge: a TPM quote, signed
by a key that never leaves the TPM, over PCRs that measured boot extended with each stage
(firmware, bootloader, kernel, the agent's files) and over a nonce the server chose.
:class:`Attestor` is that interface; :class:`SoftwareAttestor` implements it with the package
hash and no hardware root, and says so (``hardware_rooted=False``). docs/security.md.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Protocol

__all__ = ["Attestation", "Attestor", "SoftwareAttestor", "package_build_hash"]


def _files(root: Path) -> list[Path]:
    return sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".pyc", ".pyo")
    )


def package_build_hash(root: Path | None = None) -> str:
    """sha256 (hex) of the installed package at ``root`` (default: this ``edgeloop``)."""
    if root is None:
        return _installed_hash()
    outer = hashlib.sha256()
    for path in _files(root):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        outer.update(f"{path.relative_to(root).as_posix()}\0{digest}\n".encode())
    return outer.hexdigest()


@lru_cache(maxsize=1)
def _installed_hash() -> str:
    import edgeloop

    return package_build_hash(Path(edgeloop.__file__).parent)


@dataclass(frozen=True)
class Attestation:
    """Evidence about the device's software, bound to the server's ``nonce``.

    ``measurement`` is what is attested (the package hash; for a TPM, the PCR digest), and
    ``quote``/``signature`` are empty unless a hardware root signed them.
    """

    measurement: str
    nonce: bytes
    hardware_rooted: bool
    quote: bytes = b""
    signature: bytes = b""
    pcrs: dict[int, str] = field(default_factory=dict)


class Attestor(Protocol):
    """Produces :class:`Attestation` for a nonce. A TPM-backed one runs ``TPM2_Quote`` with an
    attestation key over the PCRs measured boot extended; the server verifies the quote's
    signature against the device's enrolled attestation key and the PCRs against the approved
    boot chain. Software alone cannot make that evidence unforgeable."""

    def attest(self, nonce: bytes) -> Attestation: ...


class SoftwareAttestor:
    """The package hash, with no hardware root: catches broken or unapproved installs only."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root

    def attest(self, nonce: bytes) -> Attestation:
        return Attestation(package_build_hash(self.root), nonce, hardware_rooted=False)
