"""Small ONNX models built with onnx.helper, whose outputs the tests can predict exactly."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

F = TensorProto.FLOAT


def save(path: Path, nodes: list, inputs: list, outputs: list, inits: list = ()) -> Path:  # type: ignore[type-arg,assignment]
    graph = helper.make_graph(nodes, path.stem, inputs, outputs, list(inits))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


@pytest.fixture
def save_model() -> Callable[..., Path]:
    """``save_model(path, nodes, inputs, outputs, initializers)``: check and write a model."""
    return save


@pytest.fixture
def identity_classifier(tmp_path: Path) -> Path:
    """logits = x @ I + 0: the predicted class is argmax(x). Input x float32 [N, 3]."""
    w = numpy_helper.from_array(np.eye(3, dtype=np.float32), "W")
    b = numpy_helper.from_array(np.zeros(3, dtype=np.float32), "b")
    return save(
        tmp_path / "clf.onnx",
        [
            helper.make_node("MatMul", ["x", "W"], ["h"]),
            helper.make_node("Add", ["h", "b"], ["logits"]),
        ],
        [helper.make_tensor_value_info("x", F, ["batch", 3])],
        [helper.make_tensor_value_info("logits", F, ["batch", 3])],
        [w, b],
    )


@pytest.fixture
def two_input_model(tmp_path: Path) -> Path:
    """score = x @ W + sum(E[ids]): float32 x [N, 8] and int64 ids [N, seq]; output [N, 2]."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((8, 2)).astype(np.float32), "W")
    e = numpy_helper.from_array(rng.standard_normal((5, 2)).astype(np.float32), "E")
    axes = numpy_helper.from_array(np.array([1], dtype=np.int64), "axes")
    return save(
        tmp_path / "two.onnx",
        [
            helper.make_node("MatMul", ["x", "W"], ["a"]),
            helper.make_node("Gather", ["E", "ids"], ["g"]),
            helper.make_node("ReduceSum", ["g", "axes"], ["s"], keepdims=0),
            helper.make_node("Add", ["a", "s"], ["score"]),
        ],
        [
            helper.make_tensor_value_info("x", F, ["batch", 8]),
            helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", "seq"]),
        ],
        [helper.make_tensor_value_info("score", F, ["batch", 2])],
        [w, e, axes],
    )


@pytest.fixture
def clip_autoencoder(tmp_path: Path) -> Path:
    """A 'reconstruction' that clips to [-1, 1]: samples outside that range reconstruct badly."""
    lo = numpy_helper.from_array(np.array(-1.0, dtype=np.float32), "lo")
    hi = numpy_helper.from_array(np.array(1.0, dtype=np.float32), "hi")
    return save(
        tmp_path / "ae.onnx",
        [helper.make_node("Clip", ["x", "lo", "hi"], ["recon"])],
        [helper.make_tensor_value_info("x", F, ["batch", 6])],
        [helper.make_tensor_value_info("recon", F, ["batch", 6])],
        [lo, hi],
    )


@pytest.fixture
def fixed_batch_model(tmp_path: Path) -> Path:
    """Relu on x float32 [1, 4]: a model exported with a static batch of one."""
    return save(
        tmp_path / "fixed.onnx",
        [helper.make_node("Relu", ["x"], ["y"])],
        [helper.make_tensor_value_info("x", F, [1, 4])],
        [helper.make_tensor_value_info("y", F, [1, 4])],
    )
