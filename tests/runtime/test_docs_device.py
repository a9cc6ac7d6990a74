"""Every command and the Python example in docs/device.md run as written."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from subprocess import CompletedProcess

import numpy as np
import pytest

pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

DOC = Path(__file__).resolve().parents[2] / "docs" / "device.md"


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", DOC.read_text(), flags=re.S)


@pytest.fixture
def workdir(tmp_path: Path, save_model: Callable[..., Path]) -> Path:
    """model.onnx and other.onnx (digits-shaped classifiers) and a labelled data.npz."""
    rng = np.random.default_rng(0)
    for name in ("model", "other"):
        w = numpy_helper.from_array(rng.standard_normal((64, 10)).astype(np.float32), "W")
        save_model(
            tmp_path / f"{name}.onnx",
            [
                helper.make_node("Flatten", ["x"], ["f"]),
                helper.make_node("MatMul", ["f", "W"], ["y"]),
            ],
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 1, 8, 8])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 10])],
            [w],
        )
    np.savez(
        tmp_path / "data.npz",
        x=rng.standard_normal((40, 1, 8, 8)).astype(np.float32),
        y=rng.integers(0, 10, 40),
    )
    return tmp_path


@pytest.mark.slow
def test_every_command_in_the_doc_runs(
    cli: Callable[..., CompletedProcess[str]], workdir: Path
) -> None:
    commands = [c for block in _blocks("bash") for c in block.strip().splitlines()]
    assert len(commands) >= 10
    for command in commands:
        argv = shlex.split(command)
        assert argv[0] == "edgeloop", command
        r = cli(*argv[1:], cwd=workdir)
        assert r.returncode == 0, f"{command}\n{r.stderr}"
    assert (workdir / "preds.npz").exists() and (workdir / "this-machine.json").exists()


def test_the_python_example_runs(workdir: Path) -> None:
    (code,) = _blocks("python")
    r = subprocess.run(
        [sys.executable, "-c", code], cwd=workdir, capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.split()) == 5
