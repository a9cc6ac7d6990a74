"""Training data comes only from the delayed-feedback store; features from the deployed model's
embedding output, run on ONNX Runtime (models written without onnx: a device-only test)."""

import numpy as np
import pytest

from edgeloop.errors import DataError
from edgeloop.federated.device import (
    EMBEDDING_OUTPUT,
    Head,
    TrainConfig,
    embedding_features,
    feedback_features,
    train_head,
)
from edgeloop.monitor.sketch import FeedbackStore
from edgeloop.runtime import Session
from onnx_writer import FLOAT, model_bytes

W1 = np.random.default_rng(1).normal(size=(4, 5)).astype(np.float32)
W2 = np.random.default_rng(2).normal(size=(5, 3)).astype(np.float32)


def _model(embedding: bool = True) -> bytes:
    nodes = [("MatMul", ["x", "w1"], ["h0"]), ("Relu", ["h0"], ["h"]),
             ("MatMul", ["h", "w2"], ["z"]), ("Softmax", ["z"], ["probs"], {"axis": 1})]
    outputs = [("probs", FLOAT, ["n", 3])]
    if embedding:
        nodes.append(("Identity", ["h"], [EMBEDDING_OUTPUT]))
        outputs.append((EMBEDDING_OUTPUT, FLOAT, ["n", 5]))
    return model_bytes(nodes, [("x", FLOAT, ["n", 4])], outputs, {"w1": W1, "w2": W2})


def test_features_are_the_models_penultimate_activations() -> None:
    x = np.random.default_rng(0).normal(size=(7, 4)).astype(np.float32)
    feats = embedding_features(Session(_model()), x)
    assert np.allclose(feats, np.maximum(x @ W1, 0), atol=1e-5)


def test_a_model_without_the_embedding_output_is_refused() -> None:
    with pytest.raises(DataError, match=EMBEDDING_OUTPUT):
        embedding_features(Session(_model(embedding=False)), np.zeros((1, 4), np.float32))


def test_only_labelled_predictions_become_samples() -> None:
    store = FeedbackStore(3)
    rng = np.random.default_rng(0)
    for i in range(10):
        store.record(f"p{i}", 0, inputs=rng.normal(size=5))
    for i in range(0, 10, 2):
        store.feedback(f"p{i}", i % 3)

    x, y = feedback_features(store)

    assert x.shape == (5, 5) and y.tolist() == [0, 2, 1, 0, 2]


def test_stored_raw_inputs_are_featurized_by_the_deployed_model() -> None:
    session = Session(_model())
    store = FeedbackStore(3)
    rng = np.random.default_rng(0)
    xs = rng.normal(size=(60, 4)).astype(np.float32)
    labels = np.argmax(np.maximum(xs @ W1, 0) @ W2, axis=1)
    for i, (xi, yi) in enumerate(zip(xs, labels, strict=True)):
        store.record(f"p{i}", 0, inputs=xi)
        store.feedback(f"p{i}", int(yi))

    x, y = feedback_features(store, lambda raw: embedding_features(session, raw))
    trained = train_head(Head.zeros(5, 3), x, y, TrainConfig(epochs=30, lr=0.05)).head

    assert x.shape == (60, 5) and trained.evaluate(x, y)[1] > 0.8


def test_an_empty_store_gives_no_samples() -> None:
    x, y = feedback_features(FeedbackStore(3))
    assert len(x) == 0 and len(y) == 0
