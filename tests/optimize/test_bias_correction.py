"""Bias correction for static int8: each quantized Conv/Gemm's mean output error, measured on
calibration data, is folded into its bias, which lowers the mean error of the layer outputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import QuantType, quantize_static

from edgeloop.optimize import optimize
from edgeloop.optimize._biascorr import bias_correct, final_error, output_error
from edgeloop.optimize._model import name_nodes


class _Reader:
    def __init__(self, x: np.ndarray) -> None:
        self.x, self.i = x, 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.i >= len(self.x):
            return None
        self.i += 8
        return {"x": self.x[self.i - 8 : self.i]}


def _mean_abs(errors: dict[str, np.ndarray]) -> float:
    return float(np.mean([np.abs(e).mean() for e in errors.values()]))


def test_bias_correction_reduces_the_mean_output_error(quant_conv: Path, tmp_path: Path) -> None:
    # prepare: named nodes, per-tensor int8 weights (coarse, so the rounding shifts outputs)
    model = onnx.load(str(quant_conv))
    name_nodes(model)
    src = tmp_path / "named.onnx"
    onnx.save(model, str(src))
    rng = np.random.default_rng(0)
    calib = rng.standard_normal((64, 3, 8, 8)).astype(np.float32)
    held = rng.standard_normal((64, 3, 8, 8)).astype(np.float32)
    q = tmp_path / "q.onnx"
    quantize_static(str(src), str(q), _Reader(calib), per_channel=False,  # type: ignore[arg-type]
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)  # fmt: skip
    # act
    fixed, info = bias_correct(q, src, {"x": calib}, tmp_path / "fixed.onnx")
    # assert: every biased Conv/Gemm corrected; its mean error lower, on held-out inputs too
    assert info["corrected_layers"] >= 2 and not info["skipped_layers"]
    f = onnx.load(str(src))
    for x in (calib, held):
        before = output_error(onnx.load(str(q)), f, {"x": x})
        after = output_error(onnx.load(str(fixed)), f, {"x": x})
        assert set(before) == set(after)
        assert _mean_abs(after) < _mean_abs(before)
    assert final_error(onnx.load(str(fixed)), f, {"x": held}) <= 1.05 * final_error(
        onnx.load(str(q)), f, {"x": held}
    )


def test_int8_recipe_reports_bias_correction(
    quant_conv: Path, quant_conv_npz: Path, tmp_path: Path
) -> None:
    # act: the int8 preset (bias correction auto) and the same with it off
    optimize(quant_conv, "int8", quant_conv_npz, out_dir=tmp_path / "auto", eval_samples=32)
    off = {
        "name": "int8-nobc",
        "passes": ["preprocess", {"quantize": {"bias_correction": False}}],
    }
    optimize(quant_conv, off, quant_conv_npz, out_dir=tmp_path / "off", eval_samples=32)

    # assert: the step says what it did and kept it only when the output error fell
    def details(d: str) -> dict[str, object]:
        rep = json.loads((tmp_path / d / "report.json").read_text())
        return next(s for s in rep["steps"] if s["step"] == "quantize")["details"]

    bc = details("auto")["bias_correction"]
    assert isinstance(bc, dict)
    assert bc["corrected_layers"] >= 1
    assert bc["applied"] == (bc["output_error_after"] < bc["output_error_before"])
    assert "bias_correction" not in details("off")
