"""Small ONNX models whose outputs the tests can predict exactly (written without onnx)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from onnx_writer import FLOAT, INT64, model_bytes


def save(path: Path, nodes: list, inputs: list, outputs: list, inits: list = ()) -> Path:  # type: ignore[type-arg,assignment]
    """Check and write a model made with onnx.helper (tests that need onnx itself)."""
    onnx = pytest.importorskip("onnx")
    from onnx import helper

    graph = helper.make_graph(nodes, path.stem, inputs, outputs, list(inits))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def write(path: Path, *args: Any) -> Path:
    """Write a model with tests/onnx_writer.py: runs where onnx is not installed (a device)."""
    path.write_bytes(model_bytes(*args))
    return path


@pytest.fixture
def save_model() -> Callable[..., Path]:
    """``save_model(path, nodes, inputs, outputs, initializers)``: check and write a model."""
    return save


@pytest.fixture
def identity_classifier(tmp_path: Path) -> Path:
    """logits = x @ I + 0: the predicted class is argmax(x). Input x float32 [N, 3]."""
    return write(
        tmp_path / "clf.onnx",
        [("MatMul", ["x", "W"], ["h"]), ("Add", ["h", "b"], ["logits"])],
        [("x", FLOAT, ["batch", 3])],
        [("logits", FLOAT, ["batch", 3])],
        {"W": np.eye(3, dtype=np.float32), "b": np.zeros(3, dtype=np.float32)},
    )


@pytest.fixture
def two_input_model(tmp_path: Path) -> Path:
    """score = x @ W + sum(E[ids]): float32 x [N, 8] and int64 ids [N, seq]; output [N, 2]."""
    rng = np.random.default_rng(0)
    return write(
        tmp_path / "two.onnx",
        [
            ("MatMul", ["x", "W"], ["a"]),
            ("Gather", ["E", "ids"], ["g"]),
            ("ReduceSum", ["g", "axes"], ["s"], {"keepdims": 0}),
            ("Add", ["a", "s"], ["score"]),
        ],
        [("x", FLOAT, ["batch", 8]), ("ids", INT64, ["batch", "seq"])],
        [("score", FLOAT, ["batch", 2])],
        {
            "W": rng.standard_normal((8, 2)).astype(np.float32),
            "E": rng.standard_normal((5, 2)).astype(np.float32),
            "axes": np.array([1], dtype=np.int64),
        },
    )


@pytest.fixture
def clip_autoencoder(tmp_path: Path) -> Path:
    """A 'reconstruction' that clips to [-1, 1]: samples outside that range reconstruct badly."""
    return write(
        tmp_path / "ae.onnx",
        [("Clip", ["x", "lo", "hi"], ["recon"])],
        [("x", FLOAT, ["batch", 6])],
        [("recon", FLOAT, ["batch", 6])],
        {"lo": np.array(-1.0, dtype=np.float32), "hi": np.array(1.0, dtype=np.float32)},
    )


@pytest.fixture
def fixed_batch_model(tmp_path: Path) -> Path:
    """Relu on x float32 [1, 4]: a model exported with a static batch of one."""
    return write(
        tmp_path / "fixed.onnx",
        [("Relu", ["x"], ["y"])],
        [("x", FLOAT, [1, 4])],
        [("y", FLOAT, [1, 4])],
    )
