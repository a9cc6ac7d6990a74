"""``edgeloop registry`` end to end: the real CLI in a subprocess on a real ONNX file."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from edgeloop.artifacts import ModelCard, sha256_file
from edgeloop.registry import Registry

Cli = Callable[..., subprocess.CompletedProcess[str]]
pytestmark = pytest.mark.slow  # a dozen interpreter start-ups


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture
def where(tmp_path: Path) -> list[str]:
    return ["--db", f"sqlite:///{tmp_path / 'reg.db'}", "--data", str(tmp_path / "data")]


def test_push_list_show_alias_lineage(
    cli: Cli,
    where: list[str],
    make_onnx: Callable[..., Path],
    make_card: Callable[..., ModelCard],
) -> None:
    base, child = make_onnx("base", 1.0), make_onnx("child", 2.0)
    card = make_card(child, "kws", [("source_model", sha256_file(base))])
    card.save(child.with_suffix(".card.json"))  # found beside the model without --card

    first = _ok(cli("registry", "push", base, "--name", "kws", "--alias", "production", *where))
    second = _ok(cli("registry", *where, "push", child, "-n", "kws"))
    listed = json.loads(_ok(cli("registry", "list", "--json", *where)))
    shown = json.loads(_ok(cli("registry", "show", "kws@2", "--json", *where)))
    moved = json.loads(
        _ok(cli("registry", "alias", "kws@2", "production", "--reason", "ok", "--json", *where))
    )
    tree = json.loads(_ok(cli("registry", "lineage", "kws@production", "--json", *where)))
    table = _ok(cli("registry", "show", "kws", *where))

    assert "pushed kws@1" in first and "alias production" in first
    assert "pushed kws@2" in second and "card child.card.json" in second
    assert [(m["name"], m["versions"], m["aliases"], m["latest"]) for m in listed] == [
        ("kws", [1, 2], {"production": 1}, 2)
    ]
    assert shown["artifact"]["sha256"] == sha256_file(child)
    assert shown["card"]["lineage"][0]["sha256"] == sha256_file(base)
    assert (moved["action"], moved["from_version"], moved["to_version"]) == ("set", 1, 2)
    assert (tree["model"], tree["version"]) == ("kws", 2)
    assert [(c["role"], c["model"], c["version"]) for c in tree["children"]] == [
        ("source_model", "kws", 1)
    ]
    assert "production" in table and sha256_file(base)[:12] in table


def test_bundle_variants_and_pull(
    cli: Cli,
    where: list[str],
    tmp_path: Path,
    make_onnx: Callable[..., Path],
    make_card: Callable[..., ModelCard],
    make_bundle: Callable[..., Path],
) -> None:
    model = make_onnx("m", 1.0)
    card = make_card(model, "kws")
    int8 = make_bundle(model, card, 1, out="int8.elb")
    fp32 = make_bundle(model, card, 1, out="fp32.elb")
    args = ["--bundle", int8, "--variant", "int8", "--require", "int8:isa=avx512_vnni,avx2"]
    args += ["--bundle", fp32, "--variant", "fp32"]

    _ok(cli("registry", "push", model, "-n", "kws", *args, *where))
    shown = json.loads(_ok(cli("registry", "show", "kws@1", "--json", *where)))
    _ok(cli("registry", "pull", "kws@1", tmp_path / "out.elb", "--variant", "int8", *where))

    reqs = {b["variant"]: b["requirements"]["isa"] for b in shown["bundles"]}
    assert reqs == {"fp32": [], "int8": ["avx512_vnni", "avx2"]}
    assert (tmp_path / "out.elb").read_bytes() == int8.read_bytes()


@pytest.mark.parametrize(
    ("args", "message", "code"),
    [
        (["show", "kws@9"], "model 'kws' has no version 9 (it has versions 1)", 50),
        (["show", "kws@beta"], "model 'kws' has no alias 'beta'", 50),
        (["alias", "--history", "nope"], "unknown model 'nope'; known models: kws", 50),
        (["eval", "kws@1", "accuracy", "nan"], "value of metric 'accuracy' must be finite", 50),
        (["push", "missing.onnx", "-n", "kws"], "'missing.onnx' does not exist", 11),
    ],
)
def test_bad_input_exits_with_its_code_and_one_line(
    cli: Cli,
    where: list[str],
    tmp_path: Path,
    make_onnx: Callable[..., Path],
    args: list[str],
    message: str,
    code: int,
) -> None:
    with Registry(where[1], tmp_path / "data") as reg:  # set up through the API: faster
        reg.push(make_onnx("m", 1.0), "kws")

    result = cli("registry", *args, *where)

    assert result.returncode == code
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_lower_version_is_refused_with_both_numbers(
    cli: Cli, where: list[str], tmp_path: Path, make_onnx: Callable[..., Path]
) -> None:
    with Registry(where[1], tmp_path / "data") as reg:
        reg.push(make_onnx("a", 1.0), "kws", version=5)

    result = cli("registry", "push", make_onnx("b", 2.0), "-n", "kws", "--version", "4", *where)

    assert result.returncode == 50
    assert "version 4 of 'kws' refused" in result.stderr and "newest is 5" in result.stderr


@pytest.mark.postgres
def test_cli_on_postgresql(
    cli: Cli, fresh_postgres_url: str, tmp_path: Path, make_onnx: Callable[..., Path]
) -> None:
    where = ["--db", fresh_postgres_url, "--data", str(tmp_path / "data")]

    _ok(cli("registry", "push", make_onnx("m", 1.0), "-n", "kws", "--alias", "canary", *where))
    shown = json.loads(_ok(cli("registry", "show", "kws@canary", "--json", *where)))

    assert (shown["model"], shown["version"], shown["aliases"]) == ("kws", 1, ["canary"])


def test_verify_exits_44_on_a_corrupt_artifact(
    cli: Cli, where: list[str], tmp_path: Path, make_onnx: Callable[..., Path]
) -> None:
    with Registry(where[1], tmp_path / "data") as reg:
        sha = reg.push(make_onnx("m", 1.0), "kws").artifact.sha256
        reg.blob_path(sha).write_bytes(b"x" * reg.get_version("kws", 1).artifact.length)

    result = cli("registry", "verify", *where)

    assert result.returncode == 44
    assert f"1 stored artifact(s) failed: blob {sha} is corrupt" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_pushing_the_same_file_again_is_not_a_new_version(
    cli: Cli, where: list[str], make_onnx: Callable[..., Path]
) -> None:
    model = make_onnx("m", 1.0)
    _ok(cli("registry", "push", model, "-n", "kws", *where))

    again = _ok(cli("registry", "push", model, "-n", "kws", "--alias", "production", *where))
    listed = json.loads(_ok(cli("registry", "list", "--json", *where)))
    shown = json.loads(_ok(cli("registry", "show", "kws@production", "--json", *where)))

    assert "already pushed, same sha256: kws@1" in again
    assert [m["versions"] for m in listed if m["name"] == "kws"] == [[1]]
    assert (shown["version"], shown["aliases"]) == (1, ["production"])
