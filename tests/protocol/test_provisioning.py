"""The provisioning file: round trip, 0600, and clean refusals of bad files."""

from __future__ import annotations

import json

import pytest

from edgeloop.errors import FileError, InputError
from edgeloop.protocol import Provisioning, load_provisioning, tls_context

ROOT = {"signed": {"_type": "root", "version": 1}, "signatures": []}
KEY = {"keytype": "ed25519", "scheme": "ed25519", "keyval": {"public": "00" * 32}}


def _prov(**kw) -> Provisioning:
    base = {
        "server_url": "http://127.0.0.1:8700",
        "tuf_root": ROOT,
        "director_key": KEY,
        "director_keyid": "ab" * 32,
        "enroll_token": "tok",
    }
    return Provisioning(**{**base, **kw})


def test_round_trip_and_owner_only_mode(tmp_path):
    path = _prov().save(tmp_path / "device.json")

    back = load_provisioning(path)

    assert back == _prov()
    assert path.stat().st_mode & 0o777 == 0o600
    assert json.loads(back.root_bytes()) == ROOT


def test_missing_file_is_a_file_error(tmp_path):
    with pytest.raises(FileError, match="does not exist"):
        load_provisioning(tmp_path / "nope.json")


def test_bad_field_names_the_file_and_the_field(tmp_path):
    path = tmp_path / "device.json"
    path.write_text(json.dumps({**_prov().to_dict(), "server_url": "ftp://x"}))

    with pytest.raises(InputError, match=r"device.json.*server_url 'ftp://x'"):
        load_provisioning(path)


def test_not_json_is_refused(tmp_path):
    path = tmp_path / "device.json"
    path.write_bytes(b"\xff{")

    with pytest.raises(InputError, match="provisioning file"):
        load_provisioning(path)


def test_a_ca_needs_an_https_url():
    with pytest.raises(ValueError, match="a CA is pinned, so expected https://"):
        _prov(ca_pem="-----BEGIN CERTIFICATE-----\n...")


def test_tls_context_refuses_garbage():
    with pytest.raises(InputError, match="pinned CA certificate is not usable"):
        tls_context("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
