"""The update channel end to end: publish, fetch through TUF, rotate keys, and the attacks."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from edgeloop.bundle import load_encryption_key, session_from_bundle, verify
from edgeloop.errors import InputError, SignatureError, UpdateError
from edgeloop.update import Expiry, KeyRing, Repository, rotate_key

TARGET = "tiny/{v}/tiny-{v}.elb"


def test_release_then_fetch(
    repo: Repository,
    make_bundle: Callable[[int], Path],
    client_factory: Callable[..., Any],
    tmp_path: Path,
    keys: KeyRing,
) -> None:
    src = make_bundle(1)
    published = repo.release(src)
    assert (published.path, published.version, published.targets_version) == (
        TARGET.format(v=1),
        1,
        2,
    )
    client = client_factory()
    got = client.fetch_bundle(published.path, tmp_path / "slot")
    assert got.read_bytes() == src.read_bytes()
    info = client.target_info(published.path)
    assert info is not None and info.custom["version"] == 1 and info.sha256 == published.sha256
    session = session_from_bundle(got, client.trust(), load_encryption_key(keys.dir / "fleet.pem"))
    assert session.output_names == ["y"]


def test_unknown_target_is_an_update_error(
    repo: Repository,
    make_bundle: Callable[[int], Path],
    client_factory: Callable[..., Any],
    tmp_path: Path,
) -> None:
    repo.release(make_bundle(1))
    with pytest.raises(UpdateError, match="'tiny/9/x.elb' is not in the signed targets"):
        client_factory().fetch_bundle("tiny/9/x.elb", tmp_path / "slot")


def test_release_refuses_a_bundle_from_another_release_key(
    repo: Repository, tmp_path: Path, model_factory: Callable[[int], bytes]
) -> None:
    from edgeloop.artifacts import ModelCard
    from edgeloop.bundle import generate_encryption_key, generate_signing_key, pack

    other = pack(
        model_factory(1),
        ModelCard(name="tiny", sha256=""),
        1,
        generate_signing_key(),
        [generate_encryption_key().public_key()],
    )
    (tmp_path / "evil.elb").write_bytes(other)
    with pytest.raises(SignatureError, match="untrusted key"):
        repo.release(tmp_path / "evil.elb")


def test_republishing_a_path_with_other_bytes_is_refused(
    repo: Repository, make_bundle: Callable[[int], Path], tmp_path: Path
) -> None:
    first = make_bundle(1)
    repo.release(first)
    again = make_bundle(1)  # same name and version, new data key: different bytes
    with pytest.raises(InputError, match="already published with another sha256"):
        repo.release(again)


def test_client_follows_a_root_rotation(
    repo: Repository,
    keys: KeyRing,
    make_bundle: Callable[[int], Path],
    client_factory: Callable[..., Any],
    tmp_path: Path,
) -> None:
    repo.release(make_bundle(1))
    client = client_factory()
    client.refresh()
    old_release = set(client.trust().release_keys)
    assert rotate_key(keys.dir, "root") == 2
    assert rotate_key(keys.dir, "timestamp") == 3
    assert rotate_key(keys.dir, "release") == 4
    repo.resign()
    new = client_factory()  # same state dir, same original root: walks 2, 3, 4
    new.refresh()
    assert json.loads(new.trusted_root())["signed"]["version"] == 4
    assert set(new.trust().release_keys).isdisjoint(old_release)
    # a bundle signed with the new release key verifies with the rotated trust only
    src = make_bundle(2)
    repo.release(src)
    got = client_factory().fetch_bundle(TARGET.format(v=2), tmp_path / "slot")
    assert verify(got.read_bytes(), new.trust()).version == 2


# --- attacks -------------------------------------------------------------------------------


def test_rollback_of_timestamp_is_refused(
    repo: Repository,
    make_bundle: Callable[[int], Path],
    server: Any,
    client_factory: Callable[..., Any],
    tmp_path: Path,
) -> None:
    repo.release(make_bundle(1))
    old_timestamp = (repo.metadata_dir / "timestamp.json").read_bytes()
    repo.release(make_bundle(2))
    client_factory().fetch_bundle(TARGET.format(v=2), tmp_path / "slot")  # device saw release 2
    server.overrides["/metadata/timestamp.json"] = old_timestamp  # replay release 1
    with pytest.raises(UpdateError, match="rollback or mix-and-match"):
        client_factory().refresh()


def test_freeze_with_stale_timestamp_is_refused(
    tmp_path: Path,
    keys: KeyRing,
    make_bundle: Callable[[int], Path],
    server: Any,
    client_factory: Callable[..., Any],
) -> None:
    """A repository (or mirror) frozen in the past: its timestamp has expired."""
    past = datetime.now(timezone.utc) - timedelta(days=3)
    frozen = Repository(
        server.root, keys, expiry=Expiry(timestamp=timedelta(days=1)), clock=lambda: past
    )
    frozen.release(make_bundle(1))
    with pytest.raises(UpdateError, match="expired metadata"):
        client_factory().fetch_bundle(TARGET.format(v=1), tmp_path / "slot")


def test_refresh_timestamp_unfreezes(
    tmp_path: Path,
    keys: KeyRing,
    make_bundle: Callable[[int], Path],
    server: Any,
    client_factory: Callable[..., Any],
) -> None:
    past = datetime.now(timezone.utc) - timedelta(days=3)
    Repository(server.root, keys, clock=lambda: past).release(make_bundle(1))
    Repository(server.root, keys).refresh_timestamp()
    assert client_factory().fetch_bundle(TARGET.format(v=1), tmp_path / "slot").is_file()


def test_mix_and_match_targets_and_snapshot_is_refused(
    repo: Repository,
    make_bundle: Callable[[int], Path],
    server: Any,
    client_factory: Callable[..., Any],
) -> None:
    repo.release(make_bundle(1))
    targets_1 = (repo.metadata_dir / "2.targets.json").read_bytes()
    repo.release(make_bundle(2))  # snapshot 3 names targets 3
    server.overrides["/metadata/3.targets.json"] = targets_1
    with pytest.raises(UpdateError, match="rollback or mix-and-match"):
        client_factory().refresh()


def test_oversized_metadata_is_refused(
    repo: Repository,
    make_bundle: Callable[[int], Path],
    server: Any,
    client_factory: Callable[..., Any],
) -> None:
    repo.release(make_bundle(1))
    server.overrides["/metadata/timestamp.json"] = b"{" + b" " * 100_000 + b"}"
    with pytest.raises(UpdateError, match="endless data"):
        client_factory().refresh()


def test_endless_target_download_is_refused(
    repo: Repository,
    make_bundle: Callable[[int], Path],
    server: Any,
    client_factory: Callable[..., Any],
    tmp_path: Path,
) -> None:
    published = repo.release(make_bundle(1))
    url = f"/targets/tiny/1/{published.sha256}.tiny-1.elb"
    server.overrides[url] = (
        repo.targets_dir / url.removeprefix("/targets/")
    ).read_bytes() + b"\0" * 1_000_000
    with pytest.raises(UpdateError, match="endless data"):
        client_factory().fetch_bundle(published.path, tmp_path / "slot")
    assert not (tmp_path / "slot" / "tiny-1.elb").exists()


def test_arbitrary_target_is_refused(
    repo: Repository,
    make_bundle: Callable[[int], Path],
    server: Any,
    client_factory: Callable[..., Any],
    tmp_path: Path,
) -> None:
    published = repo.release(make_bundle(1))
    url = f"/targets/tiny/1/{published.sha256}.tiny-1.elb"
    real = (repo.targets_dir / url.removeprefix("/targets/")).read_bytes()
    server.overrides[url] = bytes(b ^ 0xFF for b in real)  # same length, other bytes
    with pytest.raises(UpdateError, match="length or hash differs"):
        client_factory().fetch_bundle(published.path, tmp_path / "slot")
    assert not (tmp_path / "slot" / "tiny-1.elb").exists()


def test_metadata_signed_by_an_untrusted_key_is_refused(
    repo: Repository,
    keys: KeyRing,
    make_bundle: Callable[[int], Path],
    server: Any,
    client_factory: Callable[..., Any],
    tmp_path: Path,
) -> None:
    from tuf.api.metadata import Metadata

    from edgeloop.update import init_keys

    repo.release(make_bundle(1))
    evil = init_keys(tmp_path / "evil").signers("targets")[0]
    # the real targets metadata, re-signed by a key the device never trusted
    md = Metadata.from_bytes((repo.metadata_dir / "2.targets.json").read_bytes())
    md.sign(evil)
    server.overrides["/metadata/2.targets.json"] = md.to_bytes()
    with pytest.raises(UpdateError, match="not signed by the trusted keys"):
        client_factory().refresh()


def test_unreachable_server_is_an_update_error(keys: KeyRing, tmp_path: Path) -> None:
    from edgeloop.update import fetch_bundle

    with pytest.raises(
        UpdateError, match=r"Failed to download http://127.0.0.1:9/metadata/2.root.json \(Connect"
    ):
        fetch_bundle(
            "http://127.0.0.1:9",
            "tiny/1/tiny-1.elb",
            root=keys.root_bytes(),
            metadata_dir=tmp_path / "m",
            dest_dir=tmp_path / "slot",
        )


def test_release_key_can_live_elsewhere(tmp_path: Path) -> None:
    """The server's keys hold only release.pub.pem; CI signs; rotation takes a new public key."""
    from edgeloop.bundle import Trust, generate_signing_key, key_id, save_public_key
    from edgeloop.errors import KeyError_
    from edgeloop.update import init_keys

    ci_key, ci_key_2 = generate_signing_key(), generate_signing_key()
    save_public_key(tmp_path / "ci.pub.pem", ci_key)
    ring = init_keys(tmp_path / "server-keys", release_public_key=tmp_path / "ci.pub.pem")
    assert not (ring.dir / "release.pem").exists()
    assert ring.dir.stat().st_mode & 0o777 == 0o700
    assert set(Trust.from_root_bytes(ring.root_bytes()).release_keys) == {key_id(ci_key)}
    with pytest.raises(KeyError_, match="holds no release.pem"):
        rotate_key(ring.dir, "release")
    save_public_key(tmp_path / "ci2.pub.pem", ci_key_2)
    assert rotate_key(ring.dir, "release", release_public_key=tmp_path / "ci2.pub.pem") == 2
    assert set(Trust.from_root_bytes(ring.root_bytes()).release_keys) == {key_id(ci_key_2)}


def test_repository_files_are_world_readable(
    repo: Repository, make_bundle: Callable[[int], Path], keys: KeyRing
) -> None:
    """A web server running as another user must be able to serve them."""
    repo.release(make_bundle(1))
    files = [p for p in repo.dir.rglob("*") if p.is_file()] + [keys.dir / "root.json"]
    assert files and all(p.stat().st_mode & 0o777 == 0o644 for p in files), files
