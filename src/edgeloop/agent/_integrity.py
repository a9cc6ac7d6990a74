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

__all__ = [
    "Attestation",
    "Attestor",
    "SoftwareAttestor",
    "TpmAttestor",
    "expected_pcr",
    "package_build_hash",
    "verify_quote",
]


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


def _tpm(args: list[str], tcti: str | None, cwd: Path) -> str:
    """Run one tpm2-tools command; AgentError naming it when it fails. Transient objects are
    flushed after each (without a resource manager the TPM holds only three)."""
    import os
    import subprocess

    from edgeloop.errors import AgentError

    env = dict(os.environ, **({"TPM2TOOLS_TCTI": tcti} if tcti else {}))
    try:
        done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise AgentError(f"{args[0]}: {e}") from e
    for flush in ("-t", "-s"):
        subprocess.run(["tpm2_flushcontext", flush], env=env, capture_output=True, timeout=60)
    if done.returncode != 0:
        raise AgentError(f"{args[0]} failed: {done.stderr.strip()[-300:]}")
    return done.stdout


class TpmAttestor:
    """A TPM 2.0 quote through Debian's ``tpm2-tools`` (a real TPM, or ``swtpm`` in tests).

    :meth:`enroll` creates the endorsement key and an attestation key (AK) and returns the AK's
    public key (PEM), which the server would record at enrollment. :meth:`measure` extends PCR
    ``pcr`` (sha256; 16, the debug PCR, by default) with a digest, standing in for the measured
    boot that extends PCRs with each stage. :meth:`attest` quotes that PCR over the server's
    nonce. :func:`verify_quote` checks a quote against the AK and the expected PCR value.
    """

    def __init__(self, workdir: Path, tcti: str | None = None, pcr: int = 16) -> None:
        self.dir, self.tcti, self.pcr = Path(workdir), tcti, pcr
        self.dir.mkdir(parents=True, exist_ok=True)

    def enroll(self) -> bytes:
        _tpm(
            ["tpm2_createek", "-Q", "-c", "ek.ctx", "-G", "ecc", "-u", "ek.pub"],
            self.tcti,
            self.dir,
        )
        _tpm(
            ["tpm2_createak", "-Q", "-C", "ek.ctx", "-c", "ak.ctx", "-G", "ecc", "-g", "sha256",
             "-s", "ecdsa", "-u", "ak.pem", "-f", "pem", "-n", "ak.name"],
            self.tcti, self.dir,
        )  # fmt: skip
        return (self.dir / "ak.pem").read_bytes()

    def measure(self, digest_hex: str) -> None:
        _tpm(["tpm2_pcrextend", f"{self.pcr}:sha256={digest_hex}"], self.tcti, self.dir)

    def attest(self, nonce: bytes) -> Attestation:
        _tpm(
            ["tpm2_quote", "-Q", "-c", "ak.ctx", "-l", f"sha256:{self.pcr}", "-q", nonce.hex(),
             "-m", "quote.msg", "-s", "quote.sig", "-o", "quote.pcrs", "-g", "sha256"],
            self.tcti, self.dir,
        )  # fmt: skip
        return Attestation(
            measurement=package_build_hash(),
            nonce=nonce,
            hardware_rooted=True,
            quote=(self.dir / "quote.msg").read_bytes(),
            signature=(self.dir / "quote.sig").read_bytes(),
            pcrs={self.pcr: (self.dir / "quote.pcrs").read_bytes().hex()},
        )


def expected_pcr(*digests_hex: str) -> str:
    """A sha256 PCR's value after extending a reset PCR (all zeros) with ``digests`` in order."""
    value = bytes(32)
    for d in digests_hex:
        value = hashlib.sha256(value + bytes.fromhex(d)).digest()
    return value.hex()


def verify_quote(evidence: Attestation, ak_pem: bytes, pcr: int, expected: str) -> None:
    """Check a TPM quote: signed by the AK, over ``evidence.nonce``, and PCR ``pcr`` equal to
    ``expected`` (hex). Runs ``tpm2_checkquote`` (no TPM needed). SecurityError when not."""
    import tempfile

    from edgeloop.errors import AgentError, SecurityError

    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        (d / "ak.pem").write_bytes(ak_pem)
        (d / "quote.msg").write_bytes(evidence.quote)
        (d / "quote.sig").write_bytes(evidence.signature)
        (d / "quote.pcrs").write_bytes(bytes.fromhex(evidence.pcrs.get(pcr, "")))
        try:
            out = _tpm(
                ["tpm2_checkquote", "-u", "ak.pem", "-m", "quote.msg", "-s", "quote.sig",
                 "-f", "quote.pcrs", "-g", "sha256", "-q", evidence.nonce.hex()],
                None, d,
            )  # fmt: skip
        except AgentError as e:
            raise SecurityError(f"TPM quote refused: {e}") from e
    got = next(
        (
            line.split("0x", 1)[1].strip().lower()
            for line in out.splitlines()
            if line.strip().startswith(f"{pcr}:") and "0x" in line
        ),
        None,
    )
    if got != expected.lower():
        raise SecurityError(f"PCR {pcr} is {got}, expected {expected} (another build or boot)")
