"""Through the real CLI: keys init -> pack -> verify -> release; a device elsewhere fetches the
bundle over loopback HTTP with only the trust root and its key, verifies, and runs it."""

from __future__ import annotations

import json
import shutil
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from edgeloop.bundle import session_from_bundle
from edgeloop.update import UpdateClient

PW = {"EDGELOOP_TEST_PW": "correct horse battery"}


@pytest.fixture
def release_machine(
    tmp_path: Path, model_factory: Callable[[int], bytes], cli: Callable[..., Any]
) -> Path:
    """Keys (2-of-3 root, passphrase-protected), a model, its card and a packed bundle."""
    a = tmp_path / "build"
    a.mkdir()
    r = cli(
        "keys",
        "init",
        "--dir",
        a / "keys",
        "--threshold",
        "2",
        "--root-keys",
        "3",
        "--passphrase-env",
        "EDGELOOP_TEST_PW",
        env=PW,
    )
    assert r.returncode == 0, r.stderr
    (a / "tiny.onnx").write_bytes(model_factory(7))
    card = {
        "name": "tiny",
        "architecture": "linear",
        "lineage": [{"role": "dataset", "sha256": "ef" * 32, "name": "digits"}],
    }
    (a / "card.json").write_text(json.dumps(card))
    r = cli(
        "pack", a / "tiny.onnx", "--card", a / "card.json", "--version", "1",
        "--sign", a / "keys" / "release.pem", "--encrypt-to", a / "keys" / "fleet.pub.pem",
        "--out", a / "tiny-1.elb", "--passphrase-env", "EDGELOOP_TEST_PW", env=PW,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    return a


@pytest.mark.slow
def test_made_on_one_machine_runs_on_another(
    release_machine: Path,
    tmp_path: Path,
    cli: Callable[..., Any],
    model_factory: Callable[[int], bytes],
    serve: Callable[[Path], Any],
) -> None:
    a = release_machine
    for f in a.joinpath("keys").glob("*.pem"):
        if not f.name.endswith(".pub.pem"):
            assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
    r = cli("verify", a / "tiny-1.elb", "--trust", a / "keys" / "root.json")
    assert r.returncode == 0, r.stderr
    assert "tiny" in r.stdout and "dataset:efefefefefef" in r.stdout
    r = cli(
        "release",
        a / "tiny-1.elb",
        "--repo",
        a / "repo",
        "--keys",
        a / "keys",
        "--passphrase-env",
        "EDGELOOP_TEST_PW",
        env=PW,
    )
    assert r.returncode == 0, r.stderr
    assert "released tiny/1/tiny-1.elb" in r.stdout

    # the device: only the trust root and its (fleet) decryption key, in another directory
    b = tmp_path / "device"
    b.mkdir()
    shutil.copy(a / "keys" / "root.json", b / "root.json")
    shutil.copy(a / "keys" / "fleet.pem", b / "device.pem")

    server = serve(a / "repo")
    client = UpdateClient(server.url, (b / "root.json").read_bytes(), b / "state")
    path = client.fetch_bundle("tiny/1/tiny-1.elb", b / "slot")
    r = cli("verify", path, "--trust", b / "root.json", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["version"] == 1

    session = session_from_bundle(
        path, b / "root.json", b / "device.pem", passphrase=PW["EDGELOOP_TEST_PW"].encode()
    )
    x = np.linspace(-1, 1, 8, dtype=np.float32).reshape(2, 4)
    want = ort.InferenceSession(model_factory(7)).run(None, {"x": x})[0]
    np.testing.assert_allclose(session.run({"x": x})["y"], want, rtol=1e-6)


def _one_line_error(r: Any, code: int, needle: str) -> None:
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and needle in lines[0], r.stderr


@pytest.mark.slow
def test_cli_refuses_bad_input(
    release_machine: Path, tmp_path: Path, cli: Callable[..., Any]
) -> None:
    a = release_machine
    data = bytearray((a / "tiny-1.elb").read_bytes())
    data[40] ^= 0x01  # inside the manifest
    (tmp_path / "bad.elb").write_bytes(bytes(data))
    _one_line_error(
        cli("verify", tmp_path / "bad.elb", "--trust", a / "keys"),
        43,
        "does not match the manifest",
    )
    _one_line_error(
        cli("verify", a / "tiny-1.elb", "--trust", a / "keys", "--installed-version", "2"),
        46,
        "older than installed version 2",
    )
    pack = ["--card", a / "card.json", "--version", "2", "--sign", a / "keys" / "release.pem"]
    pack += ["--encrypt-to", a / "keys" / "fleet.pub.pem", "--out", tmp_path / "x.elb"]
    pw = ["--passphrase-env", "EDGELOOP_TEST_PW"]
    _one_line_error(cli("pack", a / "absent.onnx", *pack, *pw, env=PW), 11, "does not exist")
    _one_line_error(cli("pack", a / "tiny.onnx", *pack), 41, "needs a passphrase")
    _one_line_error(cli("keys", "init", "--dir", a / "keys"), 10, "already holds keys")
    _one_line_error(
        cli("keys", "rotate", "nobody", "--dir", a / "keys"), 10, "unknown role 'nobody'"
    )


@pytest.mark.slow
def test_cli_rotate_resigns_the_repository(release_machine: Path, cli: Callable[..., Any]) -> None:
    a = release_machine
    env = {**PW}
    assert (
        cli(
            "release",
            a / "tiny-1.elb",
            "--repo",
            a / "repo",
            "--keys",
            a / "keys",
            "--passphrase-env",
            "EDGELOOP_TEST_PW",
            env=env,
        ).returncode
        == 0
    )
    r = cli(
        "keys",
        "rotate",
        "snapshot",
        "--dir",
        a / "keys",
        "--repo",
        a / "repo",
        "--passphrase-env",
        "EDGELOOP_TEST_PW",
        env=env,
    )
    assert r.returncode == 0, r.stderr
    assert "root is now version 2" in r.stdout
    assert (a / "repo" / "metadata" / "2.root.json").is_file()
    assert (
        json.loads((a / "repo" / "metadata" / "timestamp.json").read_text())["signed"]["version"]
        == 3
    )


def test_pack_without_card_uses_the_one_beside_the_model_or_makes_one(
    release_machine: Path, cli: Callable[..., Any], model_factory: Callable[[int], bytes]
) -> None:
    a = release_machine
    (a / "other.onnx").write_bytes(model_factory(3))
    keys = [
        "--sign", a / "keys" / "release.pem", "--encrypt-to", a / "keys" / "fleet.pub.pem",
        "--passphrase-env", "EDGELOOP_TEST_PW",
    ]  # fmt: skip

    made = cli("pack", a / "other.onnx", "--version", "1", "--out", a / "o1.elb", *keys, env=PW)
    assert cli("card", a / "other.onnx", "--description", "from elsewhere").returncode == 0
    beside = cli("pack", a / "other.onnx", "--version", "2", "--out", a / "o2.elb", *keys, env=PW)

    assert made.returncode == 0, made.stderr
    assert "made a card from the model itself" in made.stderr
    assert beside.returncode == 0, beside.stderr
    r = cli("verify", a / "o2.elb", "--trust", a / "keys" / "root.json", "--json")
    assert r.returncode == 0, r.stderr
    card = json.loads(r.stdout)["model_card"]
    assert card["name"] == "other" and card["description"] == "from elsewhere"


def test_pack_and_release_again_keep_the_published_bundle(
    release_machine: Path, cli: Callable[..., Any], model_factory: Callable[[int], bytes]
) -> None:
    a = release_machine
    pack = [
        "pack", a / "tiny.onnx", "--card", a / "card.json", "--version", "1",
        "--sign", a / "keys" / "release.pem", "--encrypt-to", a / "keys" / "fleet.pub.pem",
        "--out", a / "tiny-1.elb", "--passphrase-env", "EDGELOOP_TEST_PW",
    ]  # fmt: skip
    release = ["release", a / "tiny-1.elb", "--repo", a / "repo", "--keys", a / "keys"]
    release += ["--passphrase-env", "EDGELOOP_TEST_PW"]
    first = (a / "tiny-1.elb").read_bytes()
    assert cli(*release, env=PW).returncode == 0

    again = cli(*pack, env=PW)
    released_again = cli(*release, env=PW)
    (a / "tiny.onnx").write_bytes(model_factory(8))  # another model under the same version
    changed = cli(*pack, env=PW)
    refused = cli(*release, env=PW)

    assert again.returncode == 0, again.stderr
    assert "kept it" in again.stdout
    assert released_again.returncode == 0, released_again.stderr
    assert changed.returncode == 0 and "kept it" not in changed.stdout
    assert (a / "tiny-1.elb").read_bytes() != first
    assert refused.returncode == 10 and "already published with another sha256" in refused.stderr
