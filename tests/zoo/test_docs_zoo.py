"""Every command and the Python example in docs/zoo.md run as written, in one folder."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from subprocess import CompletedProcess

import pytest
import torch

DOC = Path(__file__).resolve().parents[2] / "docs" / "zoo.md"


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", DOC.read_text(), flags=re.S)


@pytest.mark.slow
def test_every_command_and_the_example_run(
    cli: Callable[..., CompletedProcess[str]], tmp_path: Path
) -> None:
    module = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    torch.save(module, tmp_path / "my_net.pt")
    commands = [c for block in _blocks("bash") for c in block.strip().splitlines()]
    assert len(commands) >= 5
    outputs = {}
    for command in commands:
        argv = shlex.split(command)
        assert argv[0] == "edgeloop", command
        r = cli(*argv[1:], "--threads", "1") if argv[1] == "train" else cli(*argv[1:])
        assert r.returncode == 0, f"{command}\n{r.stderr}"
        outputs[command] = r.stdout
    # the digits CNN clears 97% test accuracy in the doc's 3 epochs (2 give about 98.9%)
    trained = outputs["edgeloop train cnn --dataset digits --epochs 3 --out model.pt"]
    accuracy = re.search(r"test accuracy (\d\.\d+)", trained)
    assert accuracy is not None and float(accuracy.group(1)) >= 0.97, trained
    exported = outputs["edgeloop export model.pt --out model.onnx"]
    diff = re.search(r"parity max abs diff (\S+) on 8 test data samples", exported)
    assert diff is not None and float(diff.group(1)) < 1e-4, exported
    ae = json.loads(
        outputs["edgeloop train autoencoder --dataset anomaly --epochs 5 --out ae.pt --json"]
    )
    assert ae["metrics"]["roc_auc"] > 0.8
    card = json.loads((tmp_path / "model.onnx.card.json").read_text())
    assert card["metrics"]["accuracy"] >= 0.97 and card["inputs"][0]["shape"] == ["batch", 1, 8, 8]
    for name in ("model", "ae", "my_net"):
        assert (tmp_path / f"{name}.onnx").is_file()
        assert (tmp_path / f"{name}.onnx.card.json").is_file()

    (example,) = _blocks("python")
    r = subprocess.run(
        [sys.executable, "-c", example], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "finetuned.onnx").is_file()
    assert "max_abs_diff" in r.stdout
