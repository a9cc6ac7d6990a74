"""The commands in docs/registry.md run, in order, and do what the page says."""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
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
    rng = np.random.default_rng(0)
    x = rng.standard_normal((60, 4)).astype(np.float32)  # run one row at a time: [1, 4]
    region = np.array(["north", "south"] * 30)
    np.savez(tmp_path / "holdout.npz", x=x, y=x.argmax(axis=1), region=region)
    env = {"EDGELOOP_DATA": str(tmp_path / "data"), "EDGELOOP_DB": f"sqlite:///{tmp_path}/r.db"}

    outputs = {}
    for args in _commands():
        result = cli(*args, env=env)
        assert result.returncode == 0, (args, result.stderr)
        outputs[" ".join(args[:3])] = result.stdout

    assert "revert" in outputs["registry alias --history"]
    assert "kws canary: 1 -> (removed) (remove)" in outputs["registry alias --remove"]
    assert "source_model" in outputs["registry lineage kws@2"]
    assert "kws@1" in outputs["registry lineage kws@2"]
    assert "kws@2" in outputs["registry lineage kws@1"]  # --derived
    assert (tmp_path / "kws-live.onnx").read_bytes() == base.read_bytes()
    assert "kws@2 region=north: 1.0000 (30 rows)" in " ".join(
        outputs["registry suite run"].split()
    )
    assert "all 3 stored artifact(s) match" in outputs["registry verify"]
    assert "would delete 0" in outputs["registry gc --dry-run"]


def test_registry_page_python_example_runs(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    make_onnx: Callable[..., Path],
    make_card: Callable[..., ModelCard],
) -> None:
    text = DOC.read_text(encoding="utf-8")
    code = text.split("```python\n", 1)[1].split("```", 1)[0]
    model = make_onnx("kws", 1.0)
    (tmp_path / "kws.onnx").write_bytes(model.read_bytes())
    make_card(model, "kws").save(tmp_path / "kws.card.json")
    monkeypatch.chdir(tmp_path)

    namespace: dict[str, object] = {}
    exec(compile(code, str(DOC), "exec"), namespace)

    tree = namespace["tree"]
    assert (tree.model, tree.version) == ("kws", 1)  # type: ignore[attr-defined]
    assert (tmp_path / "reg.db").is_file() and (tmp_path / "reg" / "blobs").is_dir()
