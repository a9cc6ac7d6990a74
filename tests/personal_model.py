"""A small model with an ``edgeloop_embedding`` output (written with tests/onnx_writer.py, no onnx
needed) for personalization tests: ``h = relu(x @ W1)`` (the embedding, 8 values) and
``probs = softmax(h @ W2 + b)``. A "drifted" device labels by another head on the same
embedding (``personal_labels``), which the fleet head gets mostly wrong and a head fitted on the
device's labels can learn."""

from __future__ import annotations

import numpy as np

W1 = np.random.default_rng(11).normal(size=(4, 8)).astype(np.float32)
W2 = np.random.default_rng(12).normal(size=(8, 3)).astype(np.float32)
B2 = np.zeros(3, np.float32)
W_DRIFT = np.random.default_rng(13).normal(size=(8, 3)).astype(np.float32)
CLASSES = ("a", "b", "c")
EMBEDDING = "edgeloop_embedding"


def model_bytes_(scale: float = 1.0) -> bytes:
    """``scale`` changes the fleet head (a new base version with the same embedding)."""
    from onnx_writer import FLOAT, model_bytes

    nodes = [
        ("MatMul", ["x", "w1"], ["h0"]),
        ("Relu", ["h0"], ["h"]),
        ("MatMul", ["h", "w2"], ["z0"]),
        ("Add", ["z0", "b2"], ["z"]),
        ("Softmax", ["z"], ["probs"], {"axis": 1}),
        ("Identity", ["h"], [EMBEDDING]),
    ]
    return model_bytes(
        nodes,
        [("x", FLOAT, ["n", 4])],
        [("probs", FLOAT, ["n", 3]), (EMBEDDING, FLOAT, ["n", 8])],
        {"w1": W1, "w2": (W2 * scale).astype(np.float32), "b2": B2},
    )


def embed(x: np.ndarray) -> np.ndarray:
    return np.maximum(x.astype(np.float32) @ W1, 0)  # type: ignore[no-any-return]


def fleet_labels(x: np.ndarray) -> np.ndarray:
    return (embed(x) @ W2 + B2).argmax(axis=1)  # type: ignore[no-any-return]


def personal_labels(x: np.ndarray) -> np.ndarray:
    """How a drifted device's users label: another head on the same embedding."""
    return (embed(x) @ W_DRIFT).argmax(axis=1)  # type: ignore[no-any-return]


def inputs(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, 4)).astype(np.float32)


def reference():  # type: ignore[no-untyped-def]
    from edgeloop.monitor.sketch import build_reference

    x = inputs(2000, seed=99)
    h = embed(x)
    z = h @ W2 + B2
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    return build_reference(x, p, fleet_labels(x), classes=CLASSES, embeddings=h,
                           embedding_output=EMBEDDING)
