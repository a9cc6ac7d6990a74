"""Release side of delta updates: ``Repository.write_deltas`` and ``edgeloop release --deltas``
list a signed delta target per version in the field; revoking the version removes its deltas."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from delta_models import two_layer
from edgeloop.artifacts import ModelCard
from edgeloop.bundle import (
    apply_delta,
    decrypt,
    load_encryption_key,
    load_signing_key,
    load_trust,
    pack,
    verify,
)
from edgeloop.errors import InputError
from edgeloop.update import KeyRing, Repository


@pytest.fixture
def head_bundles(tmp_path: Path, keys: KeyRing) -> Callable[[int], Path]:
    """``head_bundles(v)``: version v of one model whose head alone changes between versions."""

    def _make(version: int) -> Path:
        key = load_signing_key(keys.dir / "release.pem")
        fleet = load_encryption_key(keys.dir / "fleet.pem").public_key()
        data = pack(two_layer(1, version), ModelCard(name="cnn", sha256=""), version, key, [fleet])
        p = tmp_path / "out" / f"cnn-{version}.elb"
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(data)
        return p

    return _make


def _deltas(repo: Repository) -> dict[str, Any]:
    return {p: t for p, t in repo.targets().items() if "delta" in t.unrecognized_fields["custom"]}


def test_write_deltas_lists_one_per_version_in_the_field(
    repo: Repository, keys: KeyRing, head_bundles: Callable[[int], Path]
) -> None:
    sign = load_signing_key(keys.dir / "release.pem")
    fleet = load_encryption_key(keys.dir / "fleet.pem")
    v1 = repo.release(head_bundles(1))
    v2 = repo.release(head_bundles(2))
    v3 = repo.release(head_bundles(3))
    # the inventory says devices run v2 only: one delta, from v2
    written = repo.write_deltas(v3.path, sign, fleet, from_bundles={v2.sha256})
    assert [d.path for d in written] == [f"cnn/3/cnn-3.from-2-{v2.sha256[:12]}.eld"]
    custom = repo.targets()[written[0].path].unrecognized_fields["custom"]
    assert custom["delta"] == {
        "from_version": 2,
        "base_sha256": v2.sha256,
        "bundle_sha256": v3.sha256,
        "bundle_length": v3.length,
        "target": v3.path,
    }
    assert written[0].length < v3.length / 4
    # no inventory: every other listed version (the one from v2 is listed already)
    again = repo.write_deltas(v3.path, sign, fleet)
    assert [d.path for d in again] == [f"cnn/3/cnn-3.from-1-{v1.sha256[:12]}.eld"]
    assert v1.path in repo.targets()
    # the listed delta rebuilds the listed bundle from v2's model
    delta = repo.target_bytes(written[0].path)
    trust = load_trust(keys.dir)
    base = repo.target_bytes(v2.path)
    b = apply_delta(delta, base, two_layer(1, 2), trust, fleet, installed_version=2)
    assert b == repo.target_bytes(v3.path)
    assert decrypt(b, verify(b, trust), fleet) == two_layer(1, 3)
    # revoking v3 removes its deltas with it
    repo.revoke("cnn", 3)
    assert _deltas(repo) == {}


def test_a_delta_to_an_unlisted_version_is_refused(
    repo: Repository, keys: KeyRing, head_bundles: Callable[[int], Path]
) -> None:
    from edgeloop.bundle import make_delta

    a, b = head_bundles(1), head_bundles(2)
    repo.release(a)
    delta = make_delta(
        a.read_bytes(),
        b.read_bytes(),
        load_signing_key(keys.dir / "release.pem"),
        load_encryption_key(keys.dir / "fleet.pem"),
    )
    with pytest.raises(InputError, match="release it first"):
        repo.release_delta(delta, "cnn/2/x.eld")


@pytest.mark.slow
def test_release_cli_writes_deltas_for_the_field(
    tmp_path: Path,
    keys: KeyRing,
    head_bundles: Callable[[int], Path],
    cli: Callable[..., Any],
) -> None:
    repo_dir = tmp_path / "repo"
    v1, v2 = head_bundles(1), head_bundles(2)
    r = cli("release", v1, "--repo", repo_dir, "--keys", keys.dir)
    assert r.returncode == 0, r.stderr
    field = tmp_path / "devices.json"
    sha1 = hashlib.sha256(v1.read_bytes()).hexdigest()
    field.write_text(json.dumps([{"device_id": "d1", "installed": {"sha256": sha1}}]))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    before = sorted(p.name for p in (repo_dir / "metadata").iterdir())
    r = cli("release", v2, "--repo", repo_dir, "--keys", keys.dir, "--field", bad)
    assert r.returncode != 0 and "--field" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in (repo_dir / "metadata").iterdir()) == before  # untouched
    r = cli("release", v2, "--repo", repo_dir, "--keys", keys.dir, "--field", field)
    assert r.returncode == 0, r.stderr
    assert "delta cnn/2/cnn-2.from-1-" in r.stdout
    assert len(_deltas(Repository(repo_dir, keys))) == 1
