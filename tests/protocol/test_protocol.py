"""The shared wire protocol: request signatures, signed assignments, message validation."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timezone

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgeloop.artifacts import DeviceProfile
from edgeloop.errors import AuthError, InputError, SignatureError
from edgeloop.protocol import (
    Assignment,
    CheckIn,
    EnrollRequest,
    InstalledModel,
    parse_signature_headers,
    public_hex,
    sign_assignment,
    sign_request,
    verify_assignment,
    verify_request,
)

NOW = 1_800_000_000


def _signed(key: Ed25519PrivateKey, body: bytes = b'{"a":1}') -> dict[str, str]:
    return sign_request(key, "d-1", "POST", "/v1/checkin", body, timestamp=NOW, nonce="n" * 16)


def test_a_signed_request_verifies_and_parses_its_headers() -> None:
    key = Ed25519PrivateKey.generate()
    parsed = parse_signature_headers(_signed(key))
    assert (parsed.device_id, parsed.timestamp, parsed.nonce) == ("d-1", NOW, "n" * 16)
    verify_request(parsed, key.public_key(), "POST", "/v1/checkin", b'{"a":1}', now=NOW + 10)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("PUT", "/v1/checkin", b'{"a":1}'),
        ("POST", "/v1/telemetry", b'{"a":1}'),
        ("POST", "/v1/checkin", b'{"a":2}'),
    ],
)
def test_a_signature_does_not_cover_another_method_path_or_body(
    method: str, path: str, body: bytes
) -> None:
    key = Ed25519PrivateKey.generate()
    parsed = parse_signature_headers(_signed(key))
    with pytest.raises(AuthError, match="does not verify"):
        verify_request(parsed, key.public_key(), method, path, body, now=NOW)


def test_another_key_and_a_stale_timestamp_are_refused() -> None:
    key = Ed25519PrivateKey.generate()
    parsed = parse_signature_headers(_signed(key))
    with pytest.raises(AuthError, match="does not verify"):
        verify_request(
            parsed,
            Ed25519PrivateKey.generate().public_key(),
            "POST",
            "/v1/checkin",
            b'{"a":1}',
            now=NOW,
        )
    with pytest.raises(AuthError, match=r"-301 s from the server clock"):
        verify_request(parsed, key.public_key(), "POST", "/v1/checkin", b'{"a":1}', now=NOW + 301)


@pytest.mark.parametrize(
    ("header", "value", "match"),
    [
        ("Edgeloop-Nonce", "short", "16 to 64"),
        ("Edgeloop-Timestamp", "12.5", "Unix seconds"),
        ("Edgeloop-Signature", "!!", "not base64"),
        ("Edgeloop-Signature", base64.b64encode(b"x" * 10).decode(), "expected 64"),
        ("Edgeloop-Device", "a b", "not a device id"),
    ],
)
def test_malformed_headers_are_refused_by_name(header: str, value: str, match: str) -> None:
    headers = _signed(Ed25519PrivateKey.generate())
    headers[header] = value
    with pytest.raises(AuthError, match=match):
        parse_signature_headers(headers)


def test_a_missing_header_is_named() -> None:
    headers = _signed(Ed25519PrivateKey.generate())
    del headers["Edgeloop-Nonce"]
    with pytest.raises(AuthError, match="missing header Edgeloop-Nonce"):
        parse_signature_headers(headers)


def _assignment(**kw: object) -> Assignment:
    base: dict[str, object] = {
        "device_id": "d-1",
        "model": "kws",
        "version": 3,
        "variant": "int8",
        "target": "kws/3/kws-int8.elb",
        "sha256": "ab" * 32,
        "length": 10,
        "issued_at": "2026-11-24T18:00:00Z",
        "expires_at": "2026-11-25T18:00:00Z",
    }
    base.update(kw)
    return Assignment(**base)  # type: ignore[arg-type]


def test_a_signed_assignment_round_trips_through_verification() -> None:
    director = Ed25519PrivateKey.generate()
    envelope = sign_assignment(_assignment(rollback=True), director)
    now = datetime(2026, 11, 24, 20, tzinfo=timezone.utc)
    got = verify_assignment(envelope, director.public_key(), device_id="d-1", now=now)
    assert got == _assignment(rollback=True)
    assert got.rollback is True


def test_a_tampered_or_foreign_assignment_is_refused() -> None:
    director = Ed25519PrivateKey.generate()
    envelope = sign_assignment(_assignment(), director)
    payload = json.loads(base64.b64decode(envelope["payload"]))
    payload["version"] = 4
    tampered = {**envelope, "payload": base64.b64encode(json.dumps(payload).encode()).decode()}
    with pytest.raises(SignatureError, match="not signed by the pinned director key"):
        verify_assignment(tampered, director.public_key())
    with pytest.raises(SignatureError, match="not signed by the pinned director key"):
        verify_assignment(envelope, Ed25519PrivateKey.generate().public_key())
    with pytest.raises(SignatureError, match="for device 'd-1', expected 'd-2'"):
        verify_assignment(envelope, director.public_key(), device_id="d-2")
    late = datetime(2026, 11, 26, tzinfo=timezone.utc)
    with pytest.raises(SignatureError, match="expired at 2026-11-25T18:00:00Z"):
        verify_assignment(envelope, director.public_key(), now=late)


def test_messages_validate_fields_and_keep_unknown_ones() -> None:
    with pytest.raises(InputError, match="health 'great'"):
        CheckIn.from_dict({"agent_version": "1", "health": "great"})
    with pytest.raises(InputError, match="signing_key 'zz'"):
        EnrollRequest.from_dict(
            {
                "token": "t",
                "signing_key": "zz",
                "encryption_key": "00" * 32,
                "profile": DeviceProfile("p", "measured", "x86_64", "cpu").to_dict(),
                "agent_version": "1",
            }
        )
    checkin = CheckIn.from_dict(
        {
            "agent_version": "1",
            "installed": {"model": "kws", "version": 2},
            "future_field": 7,
        }
    )
    assert checkin.installed == InstalledModel("kws", 2)
    assert checkin.to_dict()["future_field"] == 7


def test_public_hex_is_the_raw_key() -> None:
    key = Ed25519PrivateKey.generate()
    assert len(bytes.fromhex(public_hex(key))) == 32
    assert public_hex(key) == public_hex(key.public_key())
