"""`edgeloop train` and `edgeloop export` end to end through the real CLI, bad input included."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from subprocess import CompletedProcess

import pytest
import torch

Cli = Callable[..., CompletedProcess[str]]


@pytest.mark.slow
def test_export_a_users_module_needs_and_takes_input_shape(cli: Cli, tmp_path: Path) -> None:
    module = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    torch.save(module, tmp_path / "net.pt")

    r = cli("export", "net.pt", "--out", "net.onnx")
    assert r.returncode == 10
    assert "--input-shape" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "net.onnx").exists()

    r = cli("export", "net.pt", "--out", "net.onnx", "--input-shape", "1,5")
    assert r.returncode == 22
    assert "the model fails on inputs input (batch, 5) float32" in r.stderr
    assert "Traceback" not in r.stderr

    r = cli("export", "net.pt", "--out", "net.onnx", "--input-shape", "1,4", "--json")
    assert r.returncode == 0, r.stderr
    card = json.loads(r.stdout)
    assert card["inputs"][0] == {**card["inputs"][0], "name": "input", "shape": ["batch", 4]}
    assert card["export"]["parity"]["inputs"] == "random"
    assert (tmp_path / "net.onnx").is_file()


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (
            ["train", "resnet"],
            13,
            "unknown architecture 'resnet'; known architectures: autoencoder, cnn",
        ),
        (
            ["train", "cnn", "--dataset", "mnist"],
            13,
            "unknown dataset 'mnist'; known datasets: anomaly",
        ),
        (["export", "missing.pt"], 11, "checkpoint 'missing.pt' does not exist"),
        (["export", "junk.pt"], 21, "'junk.pt' is not a PyTorch checkpoint"),
        (["export", "weights.pt"], 21, "holds only a state_dict"),
        (["export", "junk.pt", "--input-shape", "1,a"], 10, "input shape '1,a' is not a list"),
        (["train", "cnn", "--dataset", "nolabels.csv"], 12, "'nolabels.csv' has no labels"),
        (["train", "cnn", "--dataset", "empty"], 12, "image folder 'empty' holds no images"),
        (["train", "transformer", "--width", "0.5"], 13, "takes no option(s) width"),
    ],
)
def test_bad_input_is_one_clear_line(
    cli: Cli, tmp_path: Path, args: list[str], code: int, message: str
) -> None:
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    torch.save(torch.nn.Linear(2, 2).state_dict(), tmp_path / "weights.pt")
    (tmp_path / "nolabels.csv").write_text("a,b\n1,2\n3,4\n")
    (tmp_path / "empty" / "cats").mkdir(parents=True)
    r = cli(*args)
    assert r.returncode == code, (r.stdout, r.stderr)
    assert message in r.stderr
    assert "Traceback" not in r.stderr
    assert not list(tmp_path.glob("*.onnx")) and not list(tmp_path.glob("*.tmp"))
