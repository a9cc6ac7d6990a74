"""Calibration methods and the QOperator format, through recipes."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import onnx
import pytest

from edgeloop.errors import InputError
from edgeloop.optimize import optimize


@pytest.mark.parametrize("method", ["entropy", "percentile"])
def test_histogram_calibration_methods(
    method: str, quant_conv: Path, quant_conv_npz: Path, tmp_path: Path
) -> None:
    recipe = {
        "name": method,
        "passes": [{"quantize": {"calibration": method, "calib_samples": 32}}],
    }
    card = optimize(quant_conv, recipe, quant_conv_npz, out_dir=tmp_path / "o", eval_samples=32)
    details = json.loads((tmp_path / "o" / "report.json").read_text())["steps"][1]["details"]
    assert details["calibration"] == method and details["calibration_samples"] == 32
    assert card.metrics["cosine_min"] > 0.95


def test_qoperator_format_writes_qlinear_ops(
    quant_conv: Path, quant_conv_npz: Path, tmp_path: Path
) -> None:
    recipe = {"passes": [{"quantize": {"format": "qoperator", "per_channel": False}}]}
    optimize(quant_conv, recipe, quant_conv_npz, out_dir=tmp_path / "o", eval_samples=16)
    ops = Counter(n.op_type for n in onnx.load(str(tmp_path / "o" / "model.onnx")).graph.node)
    assert ops["QLinearConv"] == 2 and ops["DequantizeLinear"] <= 2


def test_unknown_calibration_method_is_named(
    quant_conv: Path, quant_conv_npz: Path, tmp_path: Path
) -> None:
    recipe = {"passes": [{"quantize": {"calibration": "kl"}}]}
    with pytest.raises(InputError, match="calibration must be one of .* got 'kl'"):
        optimize(quant_conv, recipe, quant_conv_npz, out_dir=tmp_path / "o")
