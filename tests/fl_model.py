"""A small ONNX classifier for the federated tests (built with onnx: build-side tests only):
x (n, 8) -> MatMul + Relu (16) -> Gemm (transB, 4 classes) -> Softmax, and Gaussian-blob data it
is poor on until its head is trained."""

from __future__ import annotations

import numpy as np

D, H, K = 8, 16, 4
RNG = np.random.default_rng(5)
W1 = (RNG.normal(size=(D, H)) / np.sqrt(D)).astype(np.float32)
CENTRES = np.random.default_rng(11).normal(scale=1.6, size=(K, D))


def model_bytes(head_scale: float = 0.05, seed: int = 0) -> bytes:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w2 = (np.random.default_rng(seed).normal(size=(K, H)) * head_scale).astype(np.float32)
    b2 = np.zeros(K, np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h0"]),
             helper.make_node("Relu", ["h0"], ["h"]),
             helper.make_node("Gemm", ["h", "w2", "b2"], ["z"], transB=1),
             helper.make_node("Softmax", ["z"], ["probs"], axis=1)]
    graph = helper.make_graph(
        nodes, "fl", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", D])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["n", K])],
        [numpy_helper.from_array(W1, "w1"), numpy_helper.from_array(w2, "w2"),
         numpy_helper.from_array(b2, "b2")])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m.SerializeToString()


def blobs(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, K, n)
    return (CENTRES[y] + rng.normal(size=(n, D))).astype(np.float32), y
