"""Every command, the recipe file and the Python example in docs/optimize.md run as written."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from subprocess import CompletedProcess

import numpy as np
import onnx
import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "optimize.md"


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", DOC.read_text(), flags=re.S)


@pytest.fixture
def workdir(tmp_path: Path, quant_conv: Path, quant_conv_npz: Path) -> Path:
    quant_conv.rename(tmp_path / "model.onnx")
    quant_conv_npz.rename(tmp_path / "data.npz")
    (tmp_path / "my-recipe.yaml").write_text(_blocks("yaml")[0])
    return tmp_path


@pytest.mark.slow
def test_every_command_in_the_doc_runs(
    cli: Callable[..., CompletedProcess[str]], workdir: Path
) -> None:
    commands = [c for block in _blocks("bash") for c in block.strip().splitlines()]
    assert len(commands) >= 7
    for command in commands:
        argv = shlex.split(command)
        assert argv[:2] == ["edgeloop", "optimize"], command
        r = cli(*argv[1:], cwd=workdir)
        assert r.returncode == 0, f"{command}\n{r.stderr}"
    assert (workdir / "fused" / "model.ort").exists()
    assert onnx.load(str(workdir / "mine" / "model.onnx")).graph.node
    assert (workdir / "mine" / "model.ort").exists()  # the recipe file ends with fuse


@pytest.mark.slow
def test_python_example_runs(workdir: Path) -> None:
    (code,) = _blocks("python")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    r = subprocess.run(
        [sys.executable, "-c", code],
        cwd=workdir,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    accuracy, ratio, sha = r.stdout.split()
    assert 0.0 <= float(accuracy) <= 1.0 and float(ratio) > 1.0 and len(sha) == 12
    assert np.isfinite(float(ratio))
