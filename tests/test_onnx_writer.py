"""tests/onnx_writer.py writes what onnx itself reads, checks and ONNX Runtime runs."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from onnx_writer import FLOAT, INT64, model_bytes


def _tiny() -> bytes:
    w = np.arange(8, dtype=np.float32).reshape(4, 2) - 3.0
    return model_bytes(
        [
            ("MatMul", ["x", "W"], ["h"]),
            ("ReduceSum", ["h", "axes"], ["s"], {"keepdims": 1}),
            ("Relu", ["s"], ["y"]),
        ],
        [("x", FLOAT, ["N", 4])],
        [("y", FLOAT, ["N", 1])],
        {"W": w, "axes": np.array([-1], dtype=np.int64)},
    )


def test_onnx_runtime_runs_the_written_model() -> None:
    x = np.array([[1, 0, 0, 0], [0, 0, 0, 1], [1, 1, 1, 1]], dtype=np.float32)
    sess = ort.InferenceSession(_tiny(), providers=["CPUExecutionProvider"])

    (y,) = sess.run(None, {"x": x})

    w = np.arange(8, dtype=np.float32).reshape(4, 2) - 3.0
    assert np.array_equal(y, np.maximum((x @ w).sum(1, keepdims=True), 0))


def test_onnx_reads_and_checks_the_written_model() -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import numpy_helper

    model = onnx.load_from_string(_tiny())
    onnx.checker.check_model(model, full_check=True)

    assert [n.op_type for n in model.graph.node] == ["MatMul", "ReduceSum", "Relu"]
    assert model.graph.node[1].attribute[0].i == 1
    axes = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}["axes"]
    assert axes.tolist() == [-1] and axes.dtype == np.int64
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert (dims[0].dim_param, dims[1].dim_value) == ("N", 4)
    assert model.graph.input[0].type.tensor_type.elem_type == FLOAT
    assert INT64 == onnx.TensorProto.INT64
