"""The commands in docs/registry.md run, in order, and do what the page says."""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from edgeloop.artifacts import LineageRef, ModelCard, sha256_file

DOC = Path(__file__).resolve().parents[2] / "docs" / "registry.md"


def _commands() -> list[list[str]]:
    text = DOC.read_text(encoding="utf-8")
    block = text.split("<!-- registry-example -->", 1)[1].split("<!-- /registry-example -->", 1)[0]
    lines = [ln for ln in block.strip().splitlines() if ln.strip() and not ln.startswith("```")]
    commands = [shlex.split(ln) for ln in lines]
    assert all(c[0] == "edgeloop" for c in commands), lines
    return [c[1:] for c in commands]


@pytest.mark.slow
def test_registry_page_commands_run(
    cli: Callable[..., subprocess.CompletedProcess[str]],
    tmp_path: Path,
    make_onnx: Callable[..., Path],
) -> None:
    base, int8 = make_onnx("kws", 1.0), make_onnx("kws-int8", 2.0)
    (tmp_path / "kws.onnx").write_bytes(base.read_bytes())
    (tmp_path / "kws-int8.onnx").write_bytes(int8.read_bytes())
    ModelCard(
        name="kws",
        sha256=sha256_file(int8),
        lineage=(LineageRef(role="source_model", sha256=sha256_file(base)),),
    ).save(tmp_path / "kws-int8.card.json")
    env = {"EDGELOOP_DATA": str(tmp_path / "data"), "EDGELOOP_DB": f"sqlite:///{tmp_path}/r.db"}

    outputs = {}
    for args in _commands():
        result = cli(*args, env=env)
        assert result.returncode == 0, (args, result.stderr)
        outputs[" ".join(args[:3])] = result.stdout

    assert "rollback" in outputs["registry alias --history"]
    assert "source_model" in outputs["registry lineage kws@2"]
    assert "kws@1" in outputs["registry lineage kws@2"]
    assert "kws@2" in outputs["registry lineage kws@1"]  # --derived
    assert (tmp_path / "kws-live.onnx").read_bytes() == base.read_bytes()
