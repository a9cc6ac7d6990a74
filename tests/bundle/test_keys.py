"""Key files: 0600, passphrases, wrong kinds of key, key ids."""

from __future__ import annotations

import hashlib
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from edgeloop.bundle import (
    generate_encryption_key,
    generate_signing_key,
    key_id,
    load_encryption_key,
    load_public_key,
    load_signing_key,
    save_private_key,
    save_public_key,
)
from edgeloop.errors import KeyError_


def test_private_keys_are_written_0600(tmp_path: Path) -> None:
    p = save_private_key(tmp_path / "k.pem", generate_signing_key())
    assert stat.S_IMODE(p.stat().st_mode) == 0o600
    assert b"BEGIN PRIVATE KEY" in p.read_bytes()


def test_passphrase_protected_key_round_trips(tmp_path: Path) -> None:
    key = generate_signing_key()
    p = save_private_key(tmp_path / "k.pem", key, b"correct horse")
    assert b"ENCRYPTED PRIVATE KEY" in p.read_bytes()
    assert key_id(load_signing_key(p, b"correct horse")) == key_id(key)


def test_missing_passphrase_is_a_key_error(tmp_path: Path) -> None:
    p = save_private_key(tmp_path / "k.pem", generate_signing_key(), b"pw")
    with pytest.raises(KeyError_, match="needs a passphrase"):
        load_signing_key(p)


def test_wrong_passphrase_is_a_key_error(tmp_path: Path) -> None:
    p = save_private_key(tmp_path / "k.pem", generate_signing_key(), b"pw")
    with pytest.raises(KeyError_, match="wrong passphrase"):
        load_signing_key(p, b"nope")


def test_encryption_key_where_a_signing_key_belongs(tmp_path: Path) -> None:
    p = save_private_key(tmp_path / "fleet.pem", generate_encryption_key())
    with pytest.raises(KeyError_, match="expected an Ed25519 signing key"):
        load_signing_key(p)
    with pytest.raises(KeyError_, match="expected an X25519 encryption key"):
        load_encryption_key(save_private_key(tmp_path / "r.pem", generate_signing_key()))


def test_missing_and_garbage_key_files(tmp_path: Path) -> None:
    with pytest.raises(KeyError_, match="does not exist"):
        load_signing_key(tmp_path / "absent.pem")
    (tmp_path / "junk.pem").write_text("hello")
    with pytest.raises(KeyError_, match="not a PEM private key"):
        load_signing_key(tmp_path / "junk.pem")


def test_key_id_is_sha256_of_the_raw_public_key(tmp_path: Path) -> None:
    key = generate_encryption_key()
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert key_id(key) == key_id(key.public_key()) == hashlib.sha256(raw).hexdigest()
    pub = save_public_key(tmp_path / "k.pub.pem", key)
    assert key_id(load_public_key(pub)) == key_id(key)
