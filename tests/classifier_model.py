"""A small softmax classifier as ONNX (written with tests/onnx_writer.py, no onnx needed) and
data it is calibrated on: inputs x (n, 4) ~ N(0, 1), probabilities softmax(x @ W + b), labels
drawn from those probabilities (so P(top-1 right | confidence c) = c). ``shift`` moves every
input by that many standard deviations: a covariate shift."""

from __future__ import annotations

import numpy as np

WEIGHTS = np.array(
    [[2.0, 0.0, -1.0], [0.0, 1.5, 0.5], [-0.5, 0.5, 1.0], [0.3, -0.3, 0.0]], dtype=np.float32
)
BIAS = np.array([0.1, 0.0, -0.1], dtype=np.float32)
CLASSES = ("a", "b", "c")


def classifier_bytes() -> bytes:
    from onnx_writer import FLOAT, model_bytes

    nodes = [
        ("MatMul", ["x", "w"], ["z0"]),
        ("Add", ["z0", "b"], ["z"]),
        ("Softmax", ["z"], ["probs"], {"axis": 1}),
    ]
    return model_bytes(
        nodes,
        [("x", FLOAT, ["n", 4])],
        [("probs", FLOAT, ["n", 3])],
        {"w": WEIGHTS, "b": BIAS},
    )


def probabilities(x: np.ndarray) -> np.ndarray:
    z = x.astype(np.float64) @ WEIGHTS + BIAS
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)  # type: ignore[no-any-return]


def sample(
    n: int, rng: np.random.Generator, shift: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Inputs (n, 4) float32 and labels drawn from the model's own probabilities."""
    x = (rng.normal(size=(n, 4)) + shift).astype(np.float32)
    p = probabilities(x)
    y = (p.cumsum(axis=1) > rng.random((n, 1))).argmax(axis=1)
    return x, y


def reference(n: int = 4000, seed: int = 7):  # type: ignore[no-untyped-def]
    from edgeloop.monitor.sketch import build_reference

    x, y = sample(n, np.random.default_rng(seed))
    return build_reference(x, probabilities(x), y, classes=CLASSES)
