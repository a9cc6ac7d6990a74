"""Models for delta tests: one body, heads that differ (a head-only update)."""

from __future__ import annotations

import numpy as np

from onnx_writer import FLOAT
from onnx_writer import model_bytes as write_model


def two_layer(seed_body: int, seed_head: int, hidden: int = 512) -> bytes:
    """x(64) -> relu(x W1 + b1) (the body, 128 KiB) -> W2 (the head, 4 KiB) -> y(2)."""
    body, head = np.random.default_rng(seed_body), np.random.default_rng(seed_head)
    w1 = body.standard_normal((64, hidden)).astype(np.float32)
    b1 = body.standard_normal(hidden).astype(np.float32)
    w2 = head.standard_normal((hidden, 2)).astype(np.float32)
    return write_model(
        [
            ("MatMul", ["x", "W1"], ["h"]),
            ("Add", ["h", "b1"], ["z"]),
            ("Relu", ["z"], ["r"]),
            ("MatMul", ["r", "W2"], ["y"]),
        ],
        [("x", FLOAT, ["N", 64])],
        [("y", FLOAT, ["N", 2])],
        {"W1": w1, "b1": b1, "W2": w2},
    )
