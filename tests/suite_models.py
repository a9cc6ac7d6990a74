"""Evaluation-suite fixtures shared by the registry and fleet tests: a two-class linear ONNX
model and a held-out set whose north segment has small margins."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def linear_model(path: Path, bias: tuple[float, float]) -> Path:
    """Two-class logits ``x + bias`` for ``x`` of shape (N, 2): argmax(x) when bias is 0."""
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "b"], ["y"])],
        "lin",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])],
        [numpy_helper.from_array(np.asarray(bias, dtype=np.float32), "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.write_bytes(model.SerializeToString())
    return path


def suite_file(path: Path) -> Path:
    """North rows have margins below 0.3, south rows above 1: a bias of 0.5 breaks only north."""
    rng = np.random.default_rng(0)
    n = 400
    region = np.array(["north"] * (n // 4) + ["south"] * (n - n // 4))
    margin = np.where(region == "north", rng.uniform(0.01, 0.3, n), rng.uniform(1.0, 2.0, n))
    y = rng.integers(0, 2, n)
    x = np.zeros((n, 2), dtype=np.float32)
    x[np.arange(n), y] = margin
    np.savez(path, x=x, y=y.astype(np.int64), region=region)
    return path
