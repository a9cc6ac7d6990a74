"""``session_from_bundle``: verify, decrypt in memory, self-test, load; the file edge.

The bundle file is memory-mapped, verified and decrypted chunk by chunk; the mapping is closed
before the model bytes are assembled, so the decrypted model exists only in this process's
memory and peak memory stays close to a plain ``InferenceSession`` load. The returned
:class:`edgeloop.runtime.Session` re-checks the bundle file on a schedule
(:class:`BundleFileCheck`) and refuses to serve once its bytes changed.
"""

from __future__ import annotations

import hashlib
import mmap
import re
import struct
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeloop.artifacts import Manifest
from edgeloop.bundle._format import MAGIC, SECTIONS, parse_container
from edgeloop.bundle._keys import DeviceKey, load_encryption_key
from edgeloop.bundle._selftest import check_selftest
from edgeloop.bundle._trust import Trust, load_trust
from edgeloop.bundle._verify import check_payload, decrypt, payload_sha256, verify_signed
from edgeloop.errors import DecryptionError, FileError, IntegrityError, KeyError_, ModelError

if TYPE_CHECKING:
    from edgeloop.runtime import Session

__all__ = ["BundleFileCheck", "check_requirements", "open_bundle", "session_from_bundle"]


def _version_tuple(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", v)[:3])


def check_requirements(
    manifest: Manifest, ort_version: str | None = None, host_isa: Sequence[str] | None = None
) -> None:
    """Refuse a bundle this device cannot run: too old an onnxruntime, or missing ISA flags.

    ISA flags use ``edgeloop.hardware.isa_features`` names (as ``DeviceProfile.isa`` does);
    when this machine's flags cannot be read (empty), the ISA check is skipped.
    """
    need = manifest.requirements.get("min_onnxruntime")
    if need:
        if ort_version is None:
            import onnxruntime

            ort_version = str(onnxruntime.__version__)
        if _version_tuple(ort_version) < _version_tuple(str(need)):
            raise ModelError(
                f"bundle {manifest.name!r} v{manifest.version} requires onnxruntime >= {need}, "
                f"this device has {ort_version}"
            )
    isa = manifest.requirements.get("isa") or []
    if not isinstance(isa, list) or not isa:
        return
    if host_isa is None:
        from edgeloop.hardware import isa_features

        host_isa = isa_features()
    missing = sorted(set(map(str, isa)) - set(host_isa))
    if host_isa and missing:
        raise ModelError(
            f"bundle {manifest.name!r} v{manifest.version} requires ISA {', '.join(missing)}, "
            f"which this CPU lacks (it has {', '.join(host_isa)})"
        )


class BundleFileCheck:
    """Re-read a bundle file and raise :class:`IntegrityError` if it is not the one loaded.

    Streams the file (1 MiB reads), so a check costs no more memory than a read buffer.
    """

    def __init__(self, path: str | Path, manifest: bytes, signatures: bytes, payload_sha256: str):
        self.path = Path(path)
        self._expect = (manifest, signatures)
        self._payload_sha256 = payload_sha256

    def __call__(self) -> None:
        try:
            with open(self.path, "rb") as f:
                head = f.read(12)
                if head[:8] != MAGIC or len(head) != 12:
                    raise IntegrityError(f"bundle {str(self.path)!r} changed: header differs")
                for tag, want in zip(SECTIONS[:2], self._expect, strict=True):
                    got_tag, length = struct.unpack(">4sQ", f.read(12).ljust(12, b"\0"))
                    if got_tag != tag or length != len(want) or f.read(length) != want:
                        raise IntegrityError(
                            f"bundle {str(self.path)!r} changed: its {tag.decode()} section "
                            "differs from the one verified at load"
                        )
                f.read(12)
                h = hashlib.sha256()
                while block := f.read(1 << 20):
                    h.update(block)
        except OSError as e:
            raise IntegrityError(f"bundle {str(self.path)!r} cannot be re-read: {e}") from e
        if h.hexdigest() != self._payload_sha256:
            raise IntegrityError(
                f"bundle {str(self.path)!r} changed on disk: payload sha256 "
                f"{h.hexdigest()[:16]}, loaded {self._payload_sha256[:16]}"
            )


def _trust(trust: Trust | str | Path) -> Trust:
    return trust if isinstance(trust, Trust) else load_trust(trust)


def _device_key(key: DeviceKey | str | Path, passphrase: bytes | None) -> DeviceKey:
    if isinstance(key, str | Path):
        return load_encryption_key(key, passphrase)
    if not isinstance(key, DeviceKey):
        raise KeyError_(
            f"device key: expected a key file or an X25519 key, got {type(key).__name__}"
        )
    return key


def open_bundle(
    path: str | Path,
    trust: Trust | str | Path,
    device_key: DeviceKey | str | Path,
    *,
    installed_version: int | None = None,
    rollback: bytes | None = None,
    recipient: dict[str, Any] | None = None,
    passphrase: bytes | None = None,
) -> tuple[Manifest, bytes, BundleFileCheck]:
    """Verify and decrypt the bundle at ``path``; return manifest, model bytes and a file check."""
    t, key = _trust(trust), _device_key(device_key, passphrase)
    p = Path(path)
    try:
        with open(p, "rb") as f:
            try:
                mm: mmap.mmap | bytes = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            except (ValueError, OSError):  # empty file or a file system without mmap
                mm = f.read()
    except OSError as e:
        raise FileError(f"cannot read bundle {str(p)!r}: {e.strerror or e}") from e
    # On an error the traceback still holds views into the mapping; it is unmapped when the
    # traceback goes. On success every view is gone and the mapping is closed right away, so
    # the ciphertext pages leave memory before the model is loaded.
    manifest, payload = verify_signed(mm, t, installed_version, rollback)
    check_requirements(manifest)
    c = parse_container(mm)
    check = BundleFileCheck(p, c.manifest, c.signatures, manifest.parts["payload"]["sha256"])
    del c
    # The payload is hashed on a second core while it decrypts on this one; the plaintext is
    # used only after the hash matched the signed manifest. A tampered payload fails both
    # checks: the hash's IntegrityError is the one reported.
    with ThreadPoolExecutor(1, thread_name_prefix="edgeloop-hash") as pool:
        digest = pool.submit(payload_sha256, payload)
        try:
            model = decrypt(mm, manifest, key, recipient)
        except DecryptionError:
            check_payload(manifest, digest.result())
            raise
        finally:
            digest.exception()  # wait for the hash before the mapping may go
            del payload
        check_payload(manifest, digest.result())
    if isinstance(mm, mmap.mmap):
        mm.close()
    return manifest, model, check


def session_from_bundle(
    path: str | Path,
    trust: Trust | str | Path,
    device_key: DeviceKey | str | Path,
    *,
    installed_version: int | None = None,
    rollback: bytes | None = None,
    recipient: dict[str, Any] | None = None,
    passphrase: bytes | None = None,
    integrity_interval_s: float = 60.0,
    **session_kwargs: Any,
) -> Session:
    """Verify, decrypt in memory, self-test and load a bundle; the plaintext never hits disk.

    Returns an :class:`edgeloop.runtime.Session` (``session_kwargs`` go to it) that re-checks
    the bundle file every ``integrity_interval_s`` seconds while serving; the verified manifest
    is attached as ``session.manifest``. ``installed_version``/``rollback``: see ``verify``;
    ``recipient``: a re-wrapped data key entry (see ``decrypt``). Raises a
    :class:`SecurityError` subclass, and returns nothing, when any check fails.
    """
    from edgeloop.runtime import Session

    manifest, model, check = open_bundle(
        path,
        trust,
        device_key,
        installed_version=installed_version,
        rollback=rollback,
        recipient=recipient,
        passphrase=passphrase,
    )
    # The signed manifest names the plaintext's sha256, and the ciphertext it decrypts from
    # was checked against the signed payload hash: no need to hash the model again.
    session = Session(
        model,
        integrity_check=check,
        integrity_interval_s=integrity_interval_s,
        model_sha256=str(manifest.parts["model"]["sha256"]),
        **session_kwargs,
    )
    del model
    check_selftest(manifest.selftest, session.run_unchecked)
    session.manifest = manifest
    return session
