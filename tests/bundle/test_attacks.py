"""Every attack on a bundle is refused with its own error, and no Session is ever built."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

import edgeloop.runtime
from edgeloop.bundle import (
    Trust,
    generate_encryption_key,
    generate_signing_key,
    parse_container,
    session_from_bundle,
    sign_rollback,
    verify,
)
from edgeloop.bundle._crypto import decrypt_payload
from edgeloop.bundle._format import build_container
from edgeloop.errors import (
    BundleFormatError,
    DecryptionError,
    IntegrityError,
    RollbackError,
    SecurityError,
    SelfTestError,
    SignatureError,
)


@pytest.fixture
def sessions_built(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Record every Session constructed, to show that a refused bundle loads nothing."""
    built: list[Any] = []
    real = edgeloop.runtime.Session

    class Recording(real):  # type: ignore[misc, valid-type]
        def __init__(self, *a: Any, **kw: Any) -> None:
            built.append(self)
            super().__init__(*a, **kw)

    monkeypatch.setattr(edgeloop.runtime, "Session", Recording)
    return built


def _flip(data: bytes, offset: int) -> bytes:
    out = bytearray(data)
    out[offset] ^= 0x01
    return bytes(out)


def _load(tmp_path: Path, data: bytes, trust: Trust, key: Any, **kw: Any) -> Any:
    p = tmp_path / "attack.elb"
    p.write_bytes(data)
    return session_from_bundle(p, trust, key, **kw)


def test_flipped_ciphertext_byte(
    bundle: bytes, trust: Trust, device_key: Any, tmp_path: Path, sessions_built: list[Any]
) -> None:
    c = parse_container(bundle)
    bad = _flip(bundle, c.payload_offset + len(c.payload) // 2)
    with pytest.raises(IntegrityError, match="encrypted payload .* has sha256"):
        verify(bad, trust)
    with pytest.raises(IntegrityError):
        _load(tmp_path, bad, trust, device_key)
    assert sessions_built == []


def test_flipped_manifest_byte(
    bundle: bytes, trust: Trust, device_key: Any, tmp_path: Path, sessions_built: list[Any]
) -> None:
    c = parse_container(bundle)
    start = bundle.index(c.manifest)
    bad = _flip(bundle, start + c.manifest.index(b'"version"') + 11)
    with pytest.raises(SignatureError, match="does not match the manifest"):
        verify(bad, trust)
    with pytest.raises(SignatureError):
        _load(tmp_path, bad, trust, device_key)
    assert sessions_built == []


def test_flipped_signature_byte(
    bundle: bytes,
    trust: Trust,
    release_key: Any,
    device_key: Any,
    tmp_path: Path,
    sessions_built: list[Any],
) -> None:
    c = parse_container(bundle)
    sigs = json.loads(c.signatures)
    import base64

    raw = bytearray(base64.b64decode(sigs["signatures"][0]["sig"]))
    raw[10] ^= 0x01
    sigs["signatures"][0]["sig"] = base64.b64encode(bytes(raw)).decode()
    bad = build_container(c.manifest, json.dumps(sigs).encode(), bytes(c.payload))
    with pytest.raises(SignatureError, match="signature by trusted key .* does not match"):
        verify(bad, trust)
    with pytest.raises(SignatureError):
        _load(tmp_path, bad, trust, device_key)
    assert sessions_built == []


def test_signed_by_an_unknown_key(
    bundle: bytes,
    resign: Callable[..., bytes],
    device_key: Any,
    trust: Trust,
    tmp_path: Path,
    sessions_built: list[Any],
) -> None:
    mallory = generate_signing_key()
    bad = resign(bundle, lambda m: m.update(version=99), mallory)
    with pytest.raises(SignatureError, match="signed by untrusted key"):
        verify(bad, trust)
    with pytest.raises(SignatureError):
        _load(tmp_path, bad, trust, device_key)
    assert sessions_built == []


def test_bundle_for_another_recipient(
    bundle: bytes, trust: Trust, tmp_path: Path, sessions_built: list[Any]
) -> None:
    stranger = generate_encryption_key()
    verify(bundle, trust)  # authentic, just not ours
    with pytest.raises(DecryptionError, match="not encrypted for device key"):
        _load(tmp_path, bundle, trust, stranger)
    assert sessions_built == []


def test_altered_wrapped_key_in_a_resigned_manifest_fails_to_unwrap(
    bundle: bytes,
    resign: Callable[..., bytes],
    release_key: Any,
    device_key: Any,
    trust: Trust,
    tmp_path: Path,
) -> None:
    """Even a release-key holder cannot swap the data key without the recipient noticing."""
    import base64

    def edit(m: dict[str, Any]) -> None:
        r = m["encryption"]["recipients"][0]
        raw = bytearray(base64.b64decode(r["wrapped_key"]))
        raw[0] ^= 1
        r["wrapped_key"] = base64.b64encode(bytes(raw)).decode()

    with pytest.raises(DecryptionError, match="cannot unwrap the data key"):
        _load(tmp_path, resign(bundle, edit, release_key), trust, device_key)


def test_rollback_replay_is_refused(
    bundle: bytes, trust: Trust, device_key: Any, tmp_path: Path, sessions_built: list[Any]
) -> None:
    assert verify(bundle, trust, installed_version=3).version == 3  # reinstalling is fine
    with pytest.raises(RollbackError, match="version 3 is older than installed version 5"):
        verify(bundle, trust, installed_version=5)
    with pytest.raises(RollbackError):
        _load(tmp_path, bundle, trust, device_key, installed_version=5)
    assert sessions_built == []


def test_signed_rollback_statement_allows_exactly_its_step(
    bundle: bytes, trust: Trust, release_key: Any
) -> None:
    ok = sign_rollback("tiny", 5, 3, release_key, reason="error rate 4%")
    assert verify(bundle, trust, installed_version=5, rollback=ok).version == 3
    other = sign_rollback("tiny", 6, 3, release_key)
    with pytest.raises(RollbackError, match="allows 'tiny' 6 -> 3, expected 'tiny' 5 -> 3"):
        verify(bundle, trust, installed_version=5, rollback=other)


def test_expired_rollback_statement_is_refused(
    bundle: bytes, trust: Trust, release_key: Any
) -> None:
    st = sign_rollback("tiny", 5, 3, release_key, expires_in=timedelta(hours=1))
    later = datetime.now(timezone.utc) + timedelta(hours=2)
    with pytest.raises(RollbackError, match="expired"):
        verify(bundle, trust, installed_version=5, rollback=st, now=later)


def test_rollback_statement_by_an_untrusted_key_is_refused(bundle: bytes, trust: Trust) -> None:
    st = sign_rollback("tiny", 5, 3, generate_signing_key())
    with pytest.raises(SignatureError, match="rollback signed by untrusted key"):
        verify(bundle, trust, installed_version=5, rollback=st)


@pytest.mark.parametrize("keep", [0, 5, 12, 40, -1])
def test_truncated_bundle(bundle: bytes, trust: Trust, keep: int) -> None:
    cut = bundle[:keep] if keep >= 0 else bundle[:-1]
    with pytest.raises(BundleFormatError, match="truncated|shorter than|only"):
        verify(cut, trust)


def test_dropping_the_last_chunk_fails_even_with_matching_lengths(
    bundle: bytes, trust: Trust, device_key: Any
) -> None:
    """The final-chunk flag in the associated data stops a stream cut at a chunk boundary."""
    m = verify(bundle, trust)
    payload = bytes(parse_container(bundle).payload)
    size = m.encryption["chunk_size"]
    plain = m.parts["model"]["length"]
    n = -(-plain // size)
    short = payload[: (n - 1) * (size + 16)]
    with pytest.raises(DecryptionError, match=f"chunk {n - 2} of {n - 1} fails authentication"):
        decrypt_payload(short, m.encryption, device_key, (n - 1) * size)


def test_reordered_chunks_fail(bundle: bytes, trust: Trust, device_key: Any) -> None:
    m = verify(bundle, trust)
    payload = bytes(parse_container(bundle).payload)
    step = m.encryption["chunk_size"] + 16
    swapped = payload[step : 2 * step] + payload[:step] + payload[2 * step :]
    with pytest.raises(DecryptionError, match="chunk 0 of"):
        decrypt_payload(swapped, m.encryption, device_key, m.parts["model"]["length"])


def test_selftest_mismatch_is_refused(
    bundle: bytes,
    resign: Callable[..., bytes],
    release_key: Any,
    trust: Trust,
    device_key: Any,
    tmp_path: Path,
) -> None:
    import base64

    import numpy as np

    def edit(m: dict[str, Any]) -> None:
        out = m["selftest"]["outputs"]["y"]
        y = np.frombuffer(base64.b64decode(out["data"]), dtype="<f4").copy()
        y += 0.5
        out["data"] = base64.b64encode(y.tobytes()).decode()

    bad = resign(bundle, edit, release_key)
    verify(bad, trust)  # signed correctly: only running the model shows the lie
    with pytest.raises(SelfTestError, match="self-test output 'y': .* values differ"):
        _load(tmp_path, bad, trust, device_key)


def test_every_refusal_is_a_security_error() -> None:
    for cls in (
        BundleFormatError,
        DecryptionError,
        IntegrityError,
        RollbackError,
        SelfTestError,
        SignatureError,
    ):
        assert issubclass(cls, SecurityError)
