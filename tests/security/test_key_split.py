"""The build/server key split: a fleet server that holds only online keys.

The build side keeps the root, targets and release keys (``edgeloop keys init``) and gives the
server its online part (``edgeloop keys online``). The server then cannot list a version by
itself: publishing a version the release side has not released is refused; once the build
side released it (``edgeloop release --target``), publishing records it and devices install it.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest

from _live import free_port
from e2e.conftest import FleetServer, scaled_model
from edgeloop.agent import Agent
from edgeloop.hardware import load_target

PRIVATE_RELEASE_SIDE = ("root-1.pem", "targets.pem", "release.pem")


def _ok(r) -> None:
    assert r.returncode == 0, r.stderr + r.stdout


@pytest.mark.slow
def test_server_with_online_keys_only_publishes_what_the_release_side_released(tmp_path, cli):
    from edgeloop.artifacts import ModelCard
    from edgeloop.bundle import load_public_key, load_signing_key, pack
    from edgeloop.registry import Registry

    _ok(cli("keys", "init", "--dir", "keys"))
    _ok(cli("keys", "online", "--dir", "keys", "--to", "data/keys", "--repo", "data/tuf"))
    server_keys = {p.name for p in (tmp_path / "data" / "keys").iterdir()}
    assert not server_keys & set(PRIVATE_RELEASE_SIDE)
    srv = FleetServer(tmp_path / "data", f"sqlite:///{tmp_path / 'fleet.db'}", tmp_path)
    srv.start()
    try:
        _ok(  # the server made its director key at start: the release side names it
            cli(
                "keys",
                "director",
                "--dir",
                "keys",
                "--key",
                "data/director.pub.pem",
                "--repo",
                "data/tuf",
                "--to",
                "data/keys",
            )
        )
        onnx = scaled_model(2.0)
        bundle = pack(
            onnx,
            ModelCard(name="kws", sha256=""),
            1,
            load_signing_key(tmp_path / "keys" / "release.pem"),
            [load_public_key(tmp_path / "data" / "keys" / "fleet.pub.pem")],
            name="kws",
        )
        (tmp_path / "kws-1.elb").write_bytes(bundle)
        (tmp_path / "kws-1.onnx").write_bytes(onnx)
        with Registry(srv.db_url, srv.data) as reg:
            reg.push(
                tmp_path / "kws-1.onnx",
                "kws",
                version=1,
                bundles=[(tmp_path / "kws-1.elb", "fp32", {})],
            )
        body = {"model": "kws", "version": 1}

        refused = httpx.post(srv.url + "/v1/admin/releases", json=body, headers=srv.admin)
        _ok(
            cli(
                "release",
                "kws-1.elb",
                "--repo",
                "data/tuf",
                "--keys",
                "keys",
                "--target",
                "kws/1/kws-1-fp32.elb",
            )
        )
        published = httpx.post(srv.url + "/v1/admin/releases", json=body, headers=srv.admin)
        srv.desire("kws", 1)
        agent = Agent(
            None, tmp_path / "dev", profile=load_target("rpi4"), provisioning=srv.provision()
        )
        agent.poll_sync()
    finally:
        srv.stop()

    assert refused.status_code == 409 and "targets key missing" in refused.json()["detail"]
    assert published.status_code == 201, published.text
    assert agent.poll_error is None and agent.model is not None and agent.model.version == 1
    assert float(agent.predict({"x": np.ones((1, 4), np.float32)})["y"][0, 0]) == 2.0
    assert agent.trust().root_version == 2 and agent.director_keys()  # named by the root


def test_a_server_without_a_repository_or_targets_key_says_what_to_run(tmp_path, cli):
    _ok(cli("keys", "init", "--dir", "keys"))
    _ok(cli("keys", "online", "--dir", "keys", "--to", "data/keys"))

    r = cli("server", "--data", "data", "--port", str(free_port()))

    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "edgeloop keys online" in r.stderr + r.stdout


def test_export_refuses_a_directory_that_holds_keys(tmp_path: Path, cli):
    _ok(cli("keys", "init", "--dir", "keys"))
    _ok(cli("keys", "online", "--dir", "keys", "--to", "data/keys"))

    r = cli("keys", "online", "--dir", "keys", "--to", "data/keys")

    assert r.returncode != 0 and "already holds keys" in r.stderr + r.stdout


def test_a_server_on_an_empty_data_dir_makes_only_online_keys_and_says_what_to_run(
    tmp_path: Path, cli
):
    r = cli("server", "--data", "data", "--port", str(free_port()))

    out = r.stderr + r.stdout
    assert r.returncode != 0 and "Traceback" not in out
    assert "edgeloop keys init" in out and "edgeloop keys online --dir KEYS --to" in out
    made = {p.relative_to(tmp_path / "data").as_posix() for p in (tmp_path / "data").rglob("*")}
    assert made == {"admin-token", "director.pem", "director.pub.pem"}
    assert not (tmp_path / "data" / "keys").exists() and not (tmp_path / "data" / "tuf").exists()


def test_create_release_keys_makes_every_key_on_the_server_and_warns(tmp_path: Path):
    srv = FleetServer(tmp_path / "data", f"sqlite:///{tmp_path / 'fleet.db'}", tmp_path)
    srv.start()  # FleetServer passes --create-release-keys (the trial server tests run)
    try:
        health = httpx.get(srv.url + "/healthz")
    finally:
        srv.stop()

    keys = {p.name for p in (tmp_path / "data" / "keys").iterdir()}
    log = (tmp_path / "server.log").read_text()
    assert health.status_code == 200
    assert set(PRIVATE_RELEASE_SIDE) <= keys
    assert "warning:" in log and "holds the offline root, targets and release keys" in log
