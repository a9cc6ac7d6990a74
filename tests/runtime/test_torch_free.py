"""A device has no torch (and no onnx): ``edgeloop run`` must work on an exported model anyway."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from subprocess import CompletedProcess

import numpy as np
import pytest

BLOCKER = """
import os, pathlib
pathlib.Path(os.environ["EDGELOOP_BLOCKED_MARKER"]).open("a").write("{name}\\n")
raise ImportError("{name} is not installed on this device (blocked by the test)")
"""


def _blocked_env(tmp_path: Path, names: tuple[str, ...]) -> tuple[dict[str, str], Path]:
    """PYTHONPATH with packages that record any import attempt and then fail it."""
    root = tmp_path / "blocked"
    for name in names:
        (root / name).mkdir(parents=True)
        (root / name / "__init__.py").write_text(BLOCKER.format(name=name))
    marker = tmp_path / "import-attempts.txt"
    path = os.pathsep.join(p for p in (str(root), os.environ.get("PYTHONPATH")) if p)
    return {"PYTHONPATH": path, "EDGELOOP_BLOCKED_MARKER": str(marker)}, marker


@pytest.mark.slow
def test_exported_model_runs_where_torch_cannot_be_imported(
    cli: Callable[..., CompletedProcess[str]], tmp_path: Path
) -> None:
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 5)
    ).eval()
    x = torch.randn(3, 1, 8, 8)
    model = tmp_path / "net.onnx"
    torch.onnx.export(
        net,
        (x,),
        str(model),
        input_names=["x"],
        output_names=["logits"],
        dynamic_shapes=({0: torch.export.Dim("batch")},),
    )
    with torch.no_grad():
        expected = net(x).numpy()
    np.savez(tmp_path / "in.npz", x=x.numpy())
    env, marker = _blocked_env(tmp_path, ("torch", "onnx"))

    r = cli("run", model, "--input", "in.npz", "--out", "preds.npz", env=env)

    assert r.returncode == 0, r.stderr
    assert not marker.exists(), f"imports attempted: {marker.read_text()}"
    with np.load(tmp_path / "preds.npz") as z:
        np.testing.assert_allclose(z["logits"], expected, rtol=1e-4, atol=1e-5)


def test_the_blocker_does_block(cli: Callable[..., CompletedProcess[str]], tmp_path: Path) -> None:
    import subprocess
    import sys

    env, marker = _blocked_env(tmp_path, ("torch",))
    r = subprocess.run(
        [sys.executable, "-c", "import torch"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
    )
    assert r.returncode == 1 and "blocked by the test" in r.stderr
    assert marker.read_text() == "torch\n"
