"""SmoothQuant-style migration: the float function is unchanged, the scale goes into the
LayerNorm when it feeds only the MatMuls and into an inserted Mul otherwise, and static int8 of
an activation with outlier channels gets much closer to the float model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeloop.errors import InputError
from edgeloop.optimize import optimize
from edgeloop.optimize._smooth import smooth_model

DIM, HID = 32, 64


def _block(residual: bool, seed: int = 0) -> onnx.ModelProto:
    """x -> LayerNorm (gamma with 2 outlier channels) -> MatMul -> Relu -> MatMul [+ LN out]."""
    rng = np.random.default_rng(seed)
    gamma = np.ones(DIM, np.float32)
    gamma[[3, 17]] = 40.0  # the outlier channels transformers carry
    inits = [
        numpy_helper.from_array(gamma, "gamma"),
        numpy_helper.from_array(np.zeros(DIM, np.float32), "beta"),
        numpy_helper.from_array((rng.standard_normal((DIM, HID)) / 6).astype(np.float32), "w1"),
        numpy_helper.from_array((rng.standard_normal((HID, DIM)) / 8).astype(np.float32), "w2"),
    ]
    nodes = [
        helper.make_node("LayerNormalization", ["x", "gamma", "beta"], ["ln"], axis=-1, name="ln"),
        helper.make_node("MatMul", ["ln", "w1"], ["h"], name="up"),
        helper.make_node("Relu", ["h"], ["hr"], name="act"),
        helper.make_node("MatMul", ["hr", "w2"], ["o" if residual else "y"], name="down"),
    ]
    if residual:  # post-LN BERT: the LayerNorm output also feeds the residual sum
        nodes.append(helper.make_node("Add", ["o", "ln"], ["y"], name="residual"))
    graph = helper.make_graph(
        nodes,
        "block",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8, DIM])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 8, DIM])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _x(n: int = 64, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 8, DIM)).astype(np.float32)


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return np.asarray(sess.run(None, {"x": x})[0])


@pytest.mark.parametrize("residual", [False, True])
def test_float_function_is_kept_and_the_scale_goes_where_it_may(residual: bool) -> None:
    # prepare
    model = _block(residual)
    x = _x()
    # act
    result = smooth_model(model, {"x": x}, alpha=0.8, min_ratio=4.0)
    # assert
    np.testing.assert_allclose(_run(result.model, x), _run(model, x), rtol=1e-4, atol=1e-4)
    hows = {s["activation"]: s["how"] for s in result.details["smoothed"]}
    assert hows["ln"] == ("Mul inserted" if residual else "folded into LayerNorm")
    ops = [n.op_type for n in result.model.graph.node]
    assert ops.count("Mul") == (1 if residual else 0) + (1 if "hr" in hows else 0)
    onnx.checker.check_model(result.model)


def test_activation_without_outliers_is_left_alone() -> None:
    # prepare: gamma without outliers
    model = _block(False)
    for t in model.graph.initializer:
        if t.name == "gamma":
            t.CopyFrom(numpy_helper.from_array(np.ones(DIM, np.float32), "gamma"))
    # act
    result = smooth_model(model, {"x": _x()}, min_ratio=4.0)
    # assert
    assert "ln" not in {s["activation"] for s in result.details["smoothed"]}


def test_alpha_out_of_range_is_refused() -> None:
    with pytest.raises(InputError, match="alpha must be between 0 and 1"):
        smooth_model(_block(False), {"x": _x(4)}, alpha=1.5)


@pytest.mark.slow
def test_static_int8_with_smoothing_is_closer_to_float(tmp_path: Path) -> None:
    # prepare
    src = tmp_path / "block.onnx"
    onnx.save(_block(True), str(src))
    data = {"x": _x(256)}
    off = tmp_path / "off.yaml"
    off.write_text("name: no-smooth\npasses:\n  - preprocess\n  - quantize: {smooth: false}\n")
    # act
    plain = optimize(src, off, data, out_dir=tmp_path / "plain", eval_samples=128)
    smoothed = optimize(src, "int8", data, out_dir=tmp_path / "smooth", eval_samples=128)
    # assert: the migration is recorded, and the int8 model tracks float better
    step = json.loads((tmp_path / "smooth" / "report.json").read_text())["steps"][-1]
    assert step["details"]["smooth"]["smoothed"]
    assert smoothed.metrics["sqnr_mean_db"] > plain.metrics["sqnr_mean_db"] + 3
