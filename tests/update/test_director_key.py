"""The director key in the root: named at init, renamed by a root rotation (``keys director``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgeloop.bundle import Trust, generate_signing_key, key_id, save_public_key
from edgeloop.update import KeyRing, init_keys, name_director


def test_init_names_the_director_and_renaming_is_a_root_rotation(tmp_path: Path) -> None:
    first, second = generate_signing_key(), generate_signing_key()
    ring = init_keys(tmp_path / "keys", director_public_key=first.public_key())

    unchanged = name_director(ring.dir, first.public_key())
    version = name_director(ring.dir, second.public_key())

    assert unchanged is None
    assert version == 2
    trust = Trust.from_root_bytes(KeyRing(ring.dir).root_bytes())
    assert list(trust.director_keys) == [key_id(second.public_key())]
    assert (ring.dir / "roots" / "2.root.json").is_file()  # devices walk 1 -> 2


def test_a_root_without_the_field_names_no_director(tmp_path: Path) -> None:
    ring = init_keys(tmp_path / "keys")

    assert Trust.from_root_bytes(ring.root_bytes()).director_keys == {}


def test_cli_director_names_the_servers_key(tmp_path: Path, cli: Callable[..., Any]) -> None:
    init_keys(tmp_path / "keys")
    director = generate_signing_key()
    save_public_key(tmp_path / "director.pub.pem", director)

    r = cli("keys", "director", "--dir", "keys", "--key", "director.pub.pem")

    assert r.returncode == 0, r.stderr
    assert "root version 2 names the director key" in r.stdout
    named = Trust.from_root_bytes((tmp_path / "keys" / "root.json").read_bytes()).director_keys
    assert key_id(director.public_key()) in named
