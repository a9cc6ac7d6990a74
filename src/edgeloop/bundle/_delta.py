"""Delta bundles (``.eld``): version B of a model shipped as what changed since version A.

A delta uses the bundle container (``_format``: magic, MNFT, SIGS, DATA) with its own DSSE
payload type, :data:`DELTA_TYPE`, so a delta never verifies as a bundle nor a bundle as a delta.
Its signed manifest (canonical JSON) names::

    name, base {version, bundle_sha256, model_sha256, stream_length}
    target {version, bundle_sha256, bundle_length, model_sha256, model_length,
            manifest_length, signatures_length}
    ops {encoding, compression, length, packed_length}, chunking {algorithm, min, avg, max}
    encryption {algorithm, chunk_size, nonce_prefix, salt, recipients (B's)}
    parts.payload {sha256, length}

The op list rebuilds the *target stream* ``MNFT_B || SIGS_B || model_B`` (B's signed manifest,
its signatures, its plaintext model) from the *base stream* ``MNFT_A || SIGS_A || model_A``,
which the device has (its bundle file and the model it decrypts from it). Records are
``u8 kind | u64 a | u64 b``: kind 0 copies ``b`` bytes of the base stream from offset ``a``,
kind 1 is ``b`` literal bytes that follow the record (``a`` is 0); the ops cover the target in
order. Shipping B's manifest this way costs only what changed in it (self-test outputs, hashes).

Compression (``ops.compression``): ``zlib-base-manifest`` is zlib with A's signed manifest (its
last 32 KiB, zlib's window) as the preset dictionary: the literal parts of B's manifest (a
re-baselined monitoring reference, a card with new lineage) repeat A's keys and structure,
and the device has A's manifest. On the digits CNN's head-only fix it saves 1 kB of 6.6 kB.
``zlib`` (no dictionary, older deltas) and ``none`` are read too.

DATA is the op list, zlib-compressed, then encrypted with AES-256-GCM in chunks (``_crypto``)
under ``HKDF-SHA256(B's data key, salt, "edgeloop delta key v1")``. The delta is therefore
encrypted to exactly the devices B is encrypted to, through the same per-device wrapped key
(the fleet server's re-wrap of B, or B's recipients, copied into the signed delta manifest).

Applying (:func:`apply_delta`, on the device, stdlib + cryptography + numpy): verify the delta's
signature, payload hash and length; the signed bundle hash the caller expects (assignment,
TUF target); the version floor and rollback statement, as for a full bundle; that the device's
bundle and model are the delta's base; decrypt and rebuild; verify B's own signed manifest
(same trust) and that it is the version the delta names; check the model's signed sha256;
re-encrypt it with B's data key and nonce prefix (AES-GCM is deterministic for a key and
nonce), which must give B's signed payload hash; return B's full bundle, byte for byte. The
caller installs it like a downloaded bundle; any refusal means: fetch the full bundle.

Why content-defined chunks, not a tensor diff: a tensor diff would need an ONNX parser on the
device (the onnx package is not part of the device install) and would be tied to one format.
Chunks whose boundaries depend on the bytes (a gear rolling hash, as in FastCDC) find the
unchanged runs of any file even when a change shifts everything after it, e.g. a tensor
that grew. The chunker runs on the release side only; the device just copies byte ranges.
The gear hash is written here (numpy, ~30 lines) because the CDC packages on PyPI (fastcdc,
pycdc) are native builds the device install does not carry and the release side need not.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import hashlib
import json
import os
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from edgeloop.bundle._buffers import writable_bytes
from edgeloop.bundle._crypto import (
    ALGORITHM,
    DEFAULT_CHUNK,
    decrypt_chunks,
    decrypt_payload,
    encrypt_chunks,
    unwrap_data_key,
)
from edgeloop.bundle._format import (
    MAX_MANIFEST,
    MAX_SIGS,
    build_container,
    canonical_json,
    parse_container,
    sign_envelope,
    verify_envelope,
)
from edgeloop.bundle._keys import DeviceKey
from edgeloop.bundle._rollback import check_rollback
from edgeloop.bundle._trust import Trust
from edgeloop.bundle._verify import check_payload, parse_manifest, payload_sha256
from edgeloop.errors import (
    BundleFormatError,
    DecryptionError,
    InputError,
    IntegrityError,
    SecurityError,
)

__all__ = [
    "DELTA_TYPE",
    "DeltaInfo",
    "apply_delta",
    "cdc_chunks",
    "chunk_sizes",
    "delta_breakdown",
    "delta_ops",
    "make_delta",
    "read_delta",
]

DELTA_TYPE = "application/vnd.edgeloop.delta+json"
OPS_ENCODING = "edgeloop-copy-literal-v1"
CHUNKING = "gear64-cdc-v1"
_KEY_INFO = b"edgeloop delta key v1"
_OP = struct.Struct(">BQQ")
_COPY, _LITERAL = 0, 1
_MAX_MODEL = 1 << 40  # a declared length beyond this is hostile, not a model
ZLIB_BASE = "zlib-base-manifest"  # zlib with A's manifest as the preset dictionary
COMPRESSIONS = (ZLIB_BASE, "zlib", "none")
_ZDICT = 32768  # zlib's window: the dictionary's last 32 KiB are all it can refer to

# The gear table: 256 fixed pseudo-random 64-bit values (a function of the byte only). Derived
# from SHA-256 so the table is reproducible anywhere; changing it changes every chunk boundary.
_GEAR = np.frombuffer(
    b"".join(hashlib.sha256(b"edgeloop gear %d" % i).digest()[:8] for i in range(256)), ">u8"
).astype(np.uint64)
_WINDOW = 64  # a 64-bit gear hash depends on the last 64 bytes only: h = sum G[b_{i-k}] << k


def _gear_hashes(data: np.ndarray[Any, np.dtype[np.uint8]]) -> np.ndarray[Any, Any]:
    """The rolling gear hash after each byte of ``data`` (vectorised over the 64-byte window)."""
    g: np.ndarray[Any, Any] = _GEAR[data]
    h = g.copy()
    for k in range(1, min(_WINDOW, len(g))):
        h[k:] += g[:-k] << np.uint64(k)
    return h


def cdc_chunks(
    data: bytes | memoryview, min_size: int = 1024, avg_size: int = 4096, max_size: int = 32768
) -> list[tuple[int, int]]:
    """Content-defined chunks of ``data`` as ``(offset, length)``, covering it in order.

    A boundary follows a byte whose gear hash has its top ``log2(avg_size)`` bits zero, no
    sooner than ``min_size`` after the last boundary and no later than ``max_size``.
    """
    if not 0 < min_size <= avg_size <= max_size or avg_size & (avg_size - 1):
        raise InputError(
            f"chunk sizes {min_size}/{avg_size}/{max_size}: need 0 < min <= avg <= max, "
            "avg a power of two"
        )
    arr = np.frombuffer(data, np.uint8)
    n = len(arr)
    bits = avg_size.bit_length() - 1
    mask = np.uint64(((1 << bits) - 1) << (64 - bits))
    cands: list[np.ndarray[Any, Any]] = []
    block = 1 << 20
    for start in range(0, n, block):  # blocks bound memory to ~16 bytes per byte of one block
        lo = max(0, start - (_WINDOW - 1))
        h = _gear_hashes(arr[lo : start + block])[start - lo :]
        cands.append(np.flatnonzero((h & mask) == 0) + start + 1)  # boundary after the byte
    ends = np.concatenate(cands) if cands else np.zeros(0, np.int64)
    out: list[tuple[int, int]] = []
    pos = 0
    while pos < n:
        i = int(np.searchsorted(ends, pos + min_size, side="left"))
        end = int(ends[i]) if i < len(ends) else n
        end = min(end, pos + max_size, n)
        out.append((pos, end - pos))
        pos = end
    return out


def chunk_sizes(length: int) -> tuple[int, int, int]:
    """Chunk sizes (min, average, max) for a delta whose target stream is ``length`` bytes.

    A change costs about the chunk on either side of it on top of its own bytes, so the average
    chunk scales with the stream, about a thousandth of it: a fine-tuned head of a few
    kilobytes in a 130 kB model is shipped in 128-byte chunks (4 KiB chunks would cost 2-3
    times the head), a 100 MB model in 4 KiB ones (some 25,000 chunks to index, not 800,000).
    """
    avg = 1 << max(6, min(12, (max(length, 1) // 1024).bit_length() - 1))
    return avg // 4, avg, avg * 8


def delta_ops(
    base: bytes, target: bytes, min_size: int = 1024, avg_size: int = 4096, max_size: int = 32768
) -> bytes:
    """The op list that rebuilds ``target`` from ``base`` (see the module docstring)."""
    index: dict[bytes, int] = {}
    bview, tview = memoryview(base), memoryview(target)
    for off, ln in cdc_chunks(base, min_size, avg_size, max_size):
        index.setdefault(hashlib.sha256(bview[off : off + ln]).digest(), off)
    ops: list[list[int]] = []  # [kind, a, b] with literal payloads kept by offset into target
    for off, ln in cdc_chunks(target, min_size, avg_size, max_size):
        src = index.get(hashlib.sha256(tview[off : off + ln]).digest())
        if src is not None and bview[src : src + ln] == tview[off : off + ln]:
            last = ops[-1] if ops else None
            if last and last[0] == _COPY and last[1] + last[2] == src:
                last[2] += ln
            else:
                ops.append([_COPY, src, ln])
        else:
            last = ops[-1] if ops else None
            if last and last[0] == _LITERAL:
                last[2] += ln
            else:
                ops.append([_LITERAL, off, ln])
    parts: list[bytes] = []
    for kind, a, b in ops:
        if kind == _COPY:
            parts.append(_OP.pack(_COPY, a, b))
        else:
            parts.append(_OP.pack(_LITERAL, 0, b))
            parts.append(bytes(tview[a : a + b]))
    return b"".join(parts)


def _apply_ops(ops: bytes, base: Sequence[bytes | memoryview], target_len: int) -> bytes:
    """Rebuild the target from the base stream (``base``: its segments, read as one) and an op
    list; every offset and length is checked."""
    view = memoryview(ops)
    segs = [memoryview(b).cast("B") for b in base]
    starts = [0]
    for seg in segs:
        starts.append(starts[-1] + len(seg))
    base_len = starts[-1]
    pos = out_pos = 0
    with writable_bytes(target_len) as (dst, result):
        while pos < len(view):
            if len(view) - pos < _OP.size:
                raise BundleFormatError(f"delta ops: truncated record at offset {pos}")
            kind, a, b = _OP.unpack_from(view, pos)
            pos += _OP.size
            if b > target_len - out_pos:
                raise BundleFormatError(
                    f"delta ops: a {b}-byte op at output offset {out_pos} overruns the "
                    f"{target_len}-byte target"
                )
            if kind == _COPY:
                if a > base_len or b > base_len - a:
                    raise BundleFormatError(
                        f"delta ops: copy of {b} bytes from offset {a} overruns the "
                        f"{base_len}-byte base"
                    )
                src, left, dpos = a, b, out_pos
                i = bisect.bisect_right(starts, src) - 1
                while left:
                    off = src - starts[i]
                    n = min(left, len(segs[i]) - off)
                    dst[dpos : dpos + n] = segs[i][off : off + n]
                    src, left, dpos, i = src + n, left - n, dpos + n, i + 1
            elif kind == _LITERAL:
                if a != 0 or b > len(view) - pos:
                    raise BundleFormatError(f"delta ops: malformed literal at offset {pos}")
                dst[out_pos : out_pos + b] = view[pos : pos + b]
                pos += b
            else:
                raise BundleFormatError(f"delta ops: unknown op kind {kind} at offset {pos}")
            out_pos += b
        if out_pos != target_len:
            raise BundleFormatError(
                f"delta ops rebuild {out_pos} bytes, the target has {target_len}"
            )
    return result.value


def _delta_key(data_key: bytes, salt: bytes) -> bytes:
    return HKDF(hashes.SHA256(), 32, salt=salt, info=_KEY_INFO).derive(data_key)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(value: Any, field: str, size: int | None = None) -> bytes:
    if not isinstance(value, str):
        raise BundleFormatError(f"delta manifest {field}: expected base64 text")
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as e:
        raise BundleFormatError(f"delta manifest {field}: not base64 ({e})") from e
    if size is not None and len(raw) != size:
        raise BundleFormatError(f"delta manifest {field}: {len(raw)} bytes, expected {size}")
    return raw


def _int(obj: Any, key: str, field: str, lo: int = 0, hi: int = _MAX_MODEL) -> int:
    v = obj.get(key) if isinstance(obj, dict) else None
    if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
        raise BundleFormatError(
            f"delta manifest {field}.{key} {v!r}: expected an int in [{lo}, {hi}]"
        )
    return v


def _hex(obj: Any, key: str, field: str) -> str:
    v = obj.get(key) if isinstance(obj, dict) else None
    if not isinstance(v, str) or len(v) != 64 or any(c not in "0123456789abcdef" for c in v):
        raise BundleFormatError(f"delta manifest {field}.{key} {v!r}: expected 64 hex digits")
    return v


@dataclass(frozen=True)
class DeltaInfo:
    """The checked fields of a delta's signed manifest (:func:`read_delta`)."""

    name: str
    base_version: int
    base_bundle_sha256: str
    base_model_sha256: str
    base_stream_length: int
    target_version: int
    bundle_sha256: str
    bundle_length: int
    model_sha256: str
    model_length: int
    manifest_length: int
    signatures_length: int
    ops_length: int
    packed_length: int
    compression: str
    encryption: dict[str, Any]
    payload_sha256: str
    payload_length: int


def _parse_delta_manifest(data: bytes) -> DeltaInfo:
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise BundleFormatError(f"delta manifest is not JSON ({e})") from e
    if not isinstance(obj, dict):
        raise BundleFormatError("delta manifest: expected a JSON object")
    name = obj.get("name")
    if not isinstance(name, str) or not name:
        raise BundleFormatError(f"delta manifest name {name!r}: expected a non-empty string")
    base, target, ops = obj.get("base"), obj.get("target"), obj.get("ops")
    enc, parts = obj.get("encryption"), obj.get("parts")
    if not isinstance(enc, dict):
        raise BundleFormatError("delta manifest encryption: expected an object")
    if enc.get("algorithm") != ALGORITHM:
        raise BundleFormatError(f"delta encryption.algorithm {enc.get('algorithm')!r}")
    _int(enc, "chunk_size", "encryption", 1, 1 << 30)
    _unb64(enc.get("nonce_prefix"), "encryption.nonce_prefix", 4)
    _unb64(enc.get("salt"), "encryption.salt", 16)
    if not isinstance(enc.get("recipients"), list):
        raise BundleFormatError("delta manifest encryption.recipients: expected a list")
    if not isinstance(ops, dict) or ops.get("encoding") != OPS_ENCODING:
        raise BundleFormatError(f"delta manifest ops: expected encoding {OPS_ENCODING!r}")
    if ops.get("compression") not in COMPRESSIONS:
        raise BundleFormatError(f"delta ops.compression {ops.get('compression')!r}")
    payload = parts.get("payload") if isinstance(parts, dict) else None
    info = DeltaInfo(
        name=name,
        base_version=_int(base, "version", "base"),
        base_bundle_sha256=_hex(base, "bundle_sha256", "base"),
        base_model_sha256=_hex(base, "model_sha256", "base"),
        base_stream_length=_int(base, "stream_length", "base"),
        target_version=_int(target, "version", "target"),
        bundle_sha256=_hex(target, "bundle_sha256", "target"),
        bundle_length=_int(target, "bundle_length", "target"),
        model_sha256=_hex(target, "model_sha256", "target"),
        model_length=_int(target, "model_length", "target"),
        manifest_length=_int(target, "manifest_length", "target", 1, MAX_MANIFEST),
        signatures_length=_int(target, "signatures_length", "target", 1, MAX_SIGS),
        ops_length=_int(ops, "length", "ops", 0, 2 * _MAX_MODEL),
        packed_length=_int(ops, "packed_length", "ops", 0, 2 * _MAX_MODEL),
        compression=str(ops["compression"]),
        encryption=enc,
        payload_sha256=_hex(payload, "sha256", "parts.payload"),
        payload_length=_int(payload, "length", "parts.payload", 0, 2 * _MAX_MODEL),
    )
    if info.compression == "none" and info.packed_length != info.ops_length:
        raise BundleFormatError("delta ops: uncompressed, yet packed_length != length")
    return info


def read_delta(delta: bytes | memoryview, trust: Trust) -> DeltaInfo:
    """Verify a delta's signature, payload hash and length (no key needed); its fields.

    Raises a :class:`SecurityError`.
    """
    c = parse_container(delta)
    verify_envelope(
        c.manifest,
        c.signatures,
        dict(trust.release_keys),
        trust.threshold,
        payload_type=DELTA_TYPE,
        what="delta manifest",
    )
    info = _parse_delta_manifest(c.manifest)
    if len(c.payload) != info.payload_length:
        raise IntegrityError(
            f"delta payload is {len(c.payload)} bytes, its signed manifest says "
            f"{info.payload_length}"
        )
    digest = payload_sha256(c.payload)
    if digest != info.payload_sha256:
        raise IntegrityError(
            f"delta payload has sha256 {digest[:16]}, its signed manifest says "
            f"{info.payload_sha256[:16]}"
        )
    return info


def _sections(bundle: bytes | memoryview) -> tuple[bytes, bytes]:
    c = parse_container(bundle)
    return c.manifest, c.signatures


def apply_delta(
    delta: bytes | memoryview,
    base_bundle: bytes,
    base_model: bytes,
    trust: Trust,
    device_key: DeviceKey,
    *,
    recipient: dict[str, Any] | None = None,
    installed_version: int | None = None,
    rollback: bytes | None = None,
    expect_sha256: str | None = None,
    now: datetime | None = None,
) -> bytes:
    """Rebuild version B's full bundle from the device's bundle and model (A) and a delta.

    ``base_bundle``/``base_model``: the bundle this device runs and its plaintext model.
    ``recipient``: B's data key wrapped for this device (the fleet server's re-wrap), else
    the recipients B was encrypted to are tried. ``installed_version``/``rollback``: the
    version floor, as :func:`verify` applies it to a full bundle. ``expect_sha256``: B's bundle
    sha256 from signed metadata (the assignment, the TUF target). Returns B's bundle bytes,
    which reproduce B's signed payload sha256; raises a :class:`SecurityError` otherwise.
    """
    info = read_delta(delta, trust)
    if expect_sha256 is not None and info.bundle_sha256 != expect_sha256:
        raise IntegrityError(
            f"delta rebuilds bundle {info.bundle_sha256[:16]}, the signed metadata expects "
            f"{expect_sha256[:16]}"
        )
    check_rollback(info.name, info.target_version, installed_version, rollback, trust, now)
    base_digest = hashlib.sha256(base_bundle).hexdigest()
    model_digest = hashlib.sha256(base_model).hexdigest()
    if base_digest != info.base_bundle_sha256 or model_digest != info.base_model_sha256:
        raise IntegrityError(
            f"delta {info.name}@{info.base_version}->{info.target_version} is for base bundle "
            f"{info.base_bundle_sha256[:16]}; this device runs {base_digest[:16]}"
        )
    base_mnft, base_sigs = _sections(base_bundle)
    base = (base_mnft, base_sigs, base_model)
    if sum(map(len, base)) != info.base_stream_length:
        raise IntegrityError("delta base stream length differs from the signed one")
    enc = info.encryption
    recipients = enc["recipients"] if recipient is None else [recipient]
    data_key = unwrap_data_key({"recipients": recipients}, device_key)  # not for this device
    c = parse_container(delta)
    try:
        packed = decrypt_chunks(
            c.payload,
            _delta_key(data_key, _unb64(enc["salt"], "encryption.salt", 16)),
            _unb64(enc["nonce_prefix"], "encryption.nonce_prefix", 4),
            int(enc["chunk_size"]),
            info.packed_length,
        )
    except DecryptionError as e:
        raise DecryptionError(f"delta payload: {e}") from e
    del c
    ops = _unpack(packed, info, base_mnft)
    del packed
    n_m, n_s = info.manifest_length, info.signatures_length
    stream = _apply_ops(ops, base, n_m + n_s + info.model_length)
    del ops
    view = memoryview(stream)
    mnft, sigs, model = bytes(view[:n_m]), bytes(view[n_m : n_m + n_s]), view[n_m + n_s :]
    verify_envelope(mnft, sigs, dict(trust.release_keys), trust.threshold)
    m = parse_manifest(mnft)
    have = (m.name, m.version, m.parts["model"]["sha256"], m.parts["model"]["length"])
    want = (info.name, info.target_version, info.model_sha256, info.model_length)
    if have != want:
        raise IntegrityError(
            f"delta names {want[0]}@{want[1]} ({want[2][:16]}); the manifest it rebuilt is "
            f"{have[0]}@{have[1]} ({str(have[2])[:16]})"
        )
    digest = hashlib.sha256(model).hexdigest()
    if digest != info.model_sha256:
        raise IntegrityError(
            f"delta rebuilt a model with sha256 {digest[:16]}, the signed manifest of "
            f"{m.name}@{m.version} says {info.model_sha256[:16]}"
        )
    tenc = m.encryption
    ciphertext = encrypt_chunks(
        model,
        data_key,
        _unb64(tenc.get("nonce_prefix"), "target encryption.nonce_prefix", 4),
        _int(tenc, "chunk_size", "target encryption", 1, 1 << 30),
    )
    model.release()
    view.release()
    del stream
    check_payload(m, hashlib.sha256(ciphertext).hexdigest())
    bundle = build_container(mnft, sigs, ciphertext)
    got = hashlib.sha256(bundle).hexdigest()
    if got != info.bundle_sha256 or len(bundle) != info.bundle_length:
        raise IntegrityError(
            f"delta rebuilt bundle {got[:16]} ({len(bundle)} bytes), the delta names "
            f"{info.bundle_sha256[:16]} ({info.bundle_length} bytes)"
        )
    return bundle


def delta_breakdown(
    delta: bytes | memoryview, key: DeviceKey, base_bundle: bytes | None = None
) -> dict[str, int]:
    """Where a delta's bytes go (release side, for reports): its signed metadata, its payload,
    and the target stream's bytes it copies from the base or carries as literals, per section
    of the target (B's manifest, signatures, model). ``key``: a recipient of B (the fleet
    key); ``base_bundle``: A, whose manifest a ``zlib-base-manifest`` delta's ops need. Nothing
    is verified: this explains a delta the caller made or already checked."""
    c = parse_container(delta)
    info = _parse_delta_manifest(c.manifest)
    enc = info.encryption
    data_key = unwrap_data_key({"recipients": enc["recipients"]}, key)
    packed = decrypt_chunks(
        c.payload,
        _delta_key(data_key, _unb64(enc["salt"], "encryption.salt", 16)),
        _unb64(enc["nonce_prefix"], "encryption.nonce_prefix", 4),
        int(enc["chunk_size"]),
        info.packed_length,
    )
    if info.compression == ZLIB_BASE and base_bundle is None:
        raise InputError("delta_breakdown: this delta's ops need the base bundle's manifest")
    ops = _unpack(packed, info, None if base_bundle is None else _sections(base_bundle)[0])
    ends = (
        ("manifest", info.manifest_length),
        ("signatures", info.manifest_length + info.signatures_length),
        ("model", info.manifest_length + info.signatures_length + info.model_length),
    )
    out = {
        "base_version": info.base_version,
        "target_version": info.target_version,
        "delta_bytes": len(delta),
        "metadata_bytes": len(delta) - len(c.payload),
        "payload_bytes": len(c.payload),
        "ops_bytes": len(ops),
        "ops": 0,
        "copied_bytes": 0,
        **{f"literal_{name}_bytes": 0 for name, _ in ends},
    }
    pos = at = 0
    while pos < len(ops):
        kind, _, n = _OP.unpack_from(ops, pos)
        pos += _OP.size
        out["ops"] += 1
        if kind == _COPY:
            out["copied_bytes"] += n
        else:
            start = 0
            for name, end in ends:
                out[f"literal_{name}_bytes"] += max(0, min(at + n, end) - max(at, start))
                start = end
            pos += n
        at += n
    return out


def _unpack(packed: bytes, info: DeltaInfo, base_manifest: bytes | None) -> bytes:
    if info.compression == "none":
        return packed
    zdict = base_manifest[-_ZDICT:] if info.compression == ZLIB_BASE and base_manifest else None
    return _inflate(packed, info.ops_length, zdict)


def _inflate(packed: bytes, length: int, zdict: bytes | None = None) -> bytes:
    d = zlib.decompressobj() if zdict is None else zlib.decompressobj(zdict=zdict)
    try:
        out = d.decompress(packed, length)  # never more than the signed length
    except zlib.error as e:
        raise BundleFormatError(f"delta ops do not decompress ({e})") from e
    if len(out) != length or d.unconsumed_tail or not d.eof:
        raise BundleFormatError(f"delta ops decompress to other than the signed {length} bytes")
    return out


def make_delta(
    base_bundle: bytes,
    target_bundle: bytes,
    signing_keys: Ed25519PrivateKey | Sequence[Ed25519PrivateKey],
    key: DeviceKey,
    *,
    min_size: int | None = None,
    avg_size: int | None = None,
    max_size: int | None = None,
    chunk_size: int = DEFAULT_CHUNK,
    created_at: str | None = None,
) -> bytes:
    """The delta that turns ``base_bundle`` into ``target_bundle`` (release side).

    ``key``: an X25519 key both bundles are encrypted to (the fleet key): it opens both models
    and B's data key, from which the delta's key is derived. ``signing_keys``: the release
    key(s) that sign bundles. Both bundles must be of one model name. Chunk sizes not given
    scale with the target (:func:`chunk_sizes`); the delta's manifest records those used.
    """
    keys = [signing_keys] if isinstance(signing_keys, Ed25519PrivateKey) else list(signing_keys)
    if not keys:
        raise SecurityError("a delta needs at least one signing key")
    ca, cb = parse_container(base_bundle), parse_container(target_bundle)
    ma, mb = parse_manifest(ca.manifest), parse_manifest(cb.manifest)
    for m, c in ((ma, ca), (mb, cb)):
        check_payload(m, payload_sha256(c.payload))
    if ma.name != mb.name:
        raise SecurityError(f"delta between different models: {ma.name!r} and {mb.name!r}")
    a = decrypt_payload(ca.payload, ma.encryption, key, int(ma.parts["model"]["length"]))
    b = decrypt_payload(cb.payload, mb.encryption, key, int(mb.parts["model"]["length"]))
    data_key = unwrap_data_key(mb.encryption, key)
    base_stream = ca.manifest + ca.signatures + a
    target_stream = cb.manifest + cb.signatures + b
    auto = chunk_sizes(len(target_stream))
    min_size, avg_size, max_size = (
        auto[0] if min_size is None else min_size,
        auto[1] if avg_size is None else avg_size,
        auto[2] if max_size is None else max_size,
    )
    ops = delta_ops(base_stream, target_stream, min_size, avg_size, max_size)
    z = zlib.compressobj(6, zdict=ca.manifest[-_ZDICT:])
    packed = z.compress(ops) + z.flush()
    comp = ZLIB_BASE
    if len(packed) >= len(ops):
        packed, comp = ops, "none"
    salt, prefix = os.urandom(16), os.urandom(4)
    ciphertext = encrypt_chunks(packed, _delta_key(data_key, salt), prefix, chunk_size)
    manifest = {
        "name": mb.name,
        "base": {
            "version": ma.version,
            "bundle_sha256": hashlib.sha256(base_bundle).hexdigest(),
            "model_sha256": hashlib.sha256(a).hexdigest(),
            "stream_length": len(base_stream),
        },
        "target": {
            "version": mb.version,
            "bundle_sha256": hashlib.sha256(target_bundle).hexdigest(),
            "bundle_length": len(target_bundle),
            "model_sha256": hashlib.sha256(b).hexdigest(),
            "model_length": len(b),
            "manifest_length": len(cb.manifest),
            "signatures_length": len(cb.signatures),
        },
        "ops": {
            "encoding": OPS_ENCODING,
            "compression": comp,
            "length": len(ops),
            "packed_length": len(packed),
        },
        "chunking": {"algorithm": CHUNKING, "min": min_size, "avg": avg_size, "max": max_size},
        "encryption": {
            "algorithm": ALGORITHM,
            "chunk_size": chunk_size,
            "nonce_prefix": _b64(prefix),
            "salt": _b64(salt),
            "key": "HKDF-SHA256(target data key, salt, 'edgeloop delta key v1')",
            "recipients": mb.encryption.get("recipients", []),
        },
        "parts": {
            "payload": {
                "sha256": hashlib.sha256(ciphertext).hexdigest(),
                "length": len(ciphertext),
            }
        },
        "created_at": created_at or datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    body = canonical_json(manifest)
    return build_container(body, sign_envelope(body, keys, DELTA_TYPE), ciphertext)
