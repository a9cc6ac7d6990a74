"""``edgeloop optimize --recipe auto`` on a zoo CNN checkpoint writes the faster model and says
plainly when int8 was slower. The interleaved timing is replaced by a fixed one (int8 twice as
slow, or twice as fast) so that both outcomes are checked on every machine; the real timing has
its own tests (test_interleaved_speed.py)."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest
from typer.testing import CliRunner

from edgeloop.cli.app import app
from edgeloop.optimize._measure import Evaluator


@pytest.fixture
def cnn_ckpt(tmp_path: Path) -> Path:
    from edgeloop.data import load_dataset
    from edgeloop.zoo import build_model, kwargs_for, save_checkpoint

    ds = load_dataset("digits", split="train", seed=0)
    kwargs = {**kwargs_for("cnn", ds), "width": 4}
    spec = [
        {"name": n, "shape": list(ds.shapes()[n]), "dtype": ds.dtypes()[n]} for n in ds.input_names
    ]
    return save_checkpoint(
        build_model("cnn", **kwargs),
        tmp_path / "cnn.pt",
        arch="cnn",
        arch_kwargs=kwargs,
        input_spec=spec,
        task="classification",
        classes=ds.classes,
    )


def _fixed_timing(monkeypatch: pytest.MonkeyPatch, int8_ms: float) -> None:
    """Every model with QuantizeLinear runs in ``int8_ms``, every other one in 1 ms."""

    def latencies(self: Evaluator, paths: list[Path], **_: object) -> list[float]:
        quantized = [
            any(n.op_type == "QuantizeLinear" for n in onnx.load(str(p)).graph.node) for p in paths
        ]
        return [int8_ms if q else 1.0 for q in quantized]

    monkeypatch.setattr(Evaluator, "latencies", latencies)


def _run(tmp_path: Path, ckpt: Path) -> tuple[str, dict[str, object], set[str]]:
    out = tmp_path / "o"
    args = ["optimize", str(ckpt), "--recipe", "auto", "--data", "digits", "--out", str(out)]
    r = CliRunner().invoke(app, [*args, "--samples", "64"])
    assert r.exit_code == 0, r.output
    report = json.loads((out / "report.json").read_text())
    ops = {n.op_type for n in onnx.load(str(out / "model.onnx")).graph.node}
    return r.output, report, ops


@pytest.mark.slow
def test_auto_keeps_fp32_and_says_int8_was_slower(
    cnn_ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # prepare
    _fixed_timing(monkeypatch, int8_ms=2.0)
    # act
    output, report, ops = _run(tmp_path, cnn_ckpt)
    # assert: the written model is the original, and the output says why in words
    steps = report["steps"]
    assert isinstance(steps, list)
    assert [s["step"] for s in steps][-2:] == ["quantize", "kept original"]
    assert "QuantizeLinear" not in ops and "Conv" in ops
    text = " ".join(output.split())  # the table and the warnings wrap at the terminal width
    assert "slower than the original on this machine: 0.50x" in text
    assert "kept the original model: the optimized one was slower" in text
    card = json.loads((tmp_path / "o" / "model_card.json").read_text())
    assert any("kept the original" in w for w in card["warnings"])
    assert card["metrics"]["speedup"] == 1.0  # the card describes the model written


@pytest.mark.slow
def test_auto_writes_int8_when_it_is_faster(
    cnn_ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # prepare
    _fixed_timing(monkeypatch, int8_ms=0.5)
    # act
    output, report, ops = _run(tmp_path, cnn_ckpt)
    # assert
    steps = report["steps"]
    assert isinstance(steps, list)
    assert steps[-1]["step"] == "quantize" and steps[-1]["speedup"] == pytest.approx(2.0)
    assert "QuantizeLinear" in ops or "QLinearConv" in ops
    assert "slower" not in output and "kept the original" not in output
