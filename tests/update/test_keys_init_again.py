"""``keys init`` run again on the same folder: the same set is kept, a different one refused."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from edgeloop.errors import InputError
from edgeloop.update import init_keys


def _snapshot(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir()) if p.is_file()}


def test_cli_keys_init_twice_keeps_the_keys(cli: Callable[..., Any], tmp_path: Path) -> None:
    first = cli("keys", "init", "--dir", "keys")
    before = _snapshot(tmp_path / "keys")

    again = cli("keys", "init", "--dir", "keys")

    assert first.returncode == 0, first.stderr
    assert again.returncode == 0, again.stderr
    assert "already holds these keys" in again.stdout and "nothing changed" in again.stdout
    assert _snapshot(tmp_path / "keys") == before


def test_cli_keys_init_with_another_shape_is_refused(
    cli: Callable[..., Any], tmp_path: Path
) -> None:
    assert cli("keys", "init", "--dir", "keys").returncode == 0
    before = _snapshot(tmp_path / "keys")

    r = cli("keys", "init", "--dir", "keys", "--threshold", "2", "--root-keys", "3")

    assert r.returncode == 10
    assert r.stderr.strip().splitlines() == [
        "error: 'keys' already holds keys with a 1-of-1 root, not the 2-of-3 asked for; "
        "use `edgeloop keys rotate` or another --dir"
    ]
    assert _snapshot(tmp_path / "keys") == before


def test_init_keys_exist_ok_refuses_another_release_key(tmp_path: Path) -> None:
    init_keys(tmp_path / "a")
    other = init_keys(tmp_path / "b").dir / "release.pub.pem"

    kept = init_keys(tmp_path / "a", exist_ok=True)
    with pytest.raises(InputError, match="another release key"):
        init_keys(tmp_path / "a", exist_ok=True, release_public_key=other)
    with pytest.raises(InputError, match="already holds keys"):
        init_keys(tmp_path / "a")

    assert kept.dir == tmp_path / "a"
