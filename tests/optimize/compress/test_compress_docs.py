"""Every command and the Python example in docs/compress.md run as written."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from subprocess import CompletedProcess

import pytest

DOC = Path(__file__).resolve().parents[3] / "docs" / "compress.md"

pytestmark = pytest.mark.slow


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", DOC.read_text(), flags=re.S)


def test_every_command_in_the_doc_runs(
    cli: Callable[..., CompletedProcess[str]], compress_ckpt: Path, tmp_path: Path
) -> None:
    shutil.copy(compress_ckpt, tmp_path / "cnn.pt")
    commands = [c for block in _blocks("bash") for c in block.strip().splitlines()]
    assert len(commands) >= 8
    for command in commands:
        argv = shlex.split(command)
        assert argv[0] == "edgeloop", command
        r = cli(*argv[1:], cwd=tmp_path)
        assert r.returncode == 0, f"{command}\n{r.stderr}"
    for f in ("pruned.pt", "pruned2.pt", "student.pt", "sparse.pt", "cnn-qat.onnx", "cnn.bin.npz"):
        assert (tmp_path / f).exists(), f
    assert (tmp_path / "p50" / "model.onnx").exists()
    assert (tmp_path / "pruned-int8" / "model.onnx").exists()


def test_python_example_runs(compress_ckpt: Path, tmp_path: Path) -> None:
    shutil.copy(compress_ckpt, tmp_path / "cnn.pt")
    (code,) = _blocks("python")
    r = subprocess.run(
        [sys.executable, "-c", "import torch; torch.set_num_threads(1)\n" + code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert r.returncode == 0, r.stderr
    before, after, acc, ratio, student_acc = r.stdout.split()
    assert int(after) < int(before) and 0 <= float(acc) <= 1
    assert float(ratio) < 0.5 and 0 <= float(student_acc) <= 1
    assert (tmp_path / "cnn-qat.onnx").exists() and (tmp_path / "cnn.bin.npz").exists()
