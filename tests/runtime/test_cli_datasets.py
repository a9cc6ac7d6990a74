"""``evaluate`` and ``bench`` on the built-in datasets, with models whose scores numpy predicts."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from subprocess import CompletedProcess

import numpy as np
import pytest

pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from edgeloop.runtime import metrics

data = pytest.importorskip("edgeloop.data")

Cli = Callable[..., CompletedProcess[str]]
F = TensorProto.FLOAT


def _const(name: str, value: np.ndarray) -> object:
    return numpy_helper.from_array(value, name)


def test_evaluate_digits_with_a_nearest_centroid_model(
    cli: Cli, tmp_path: Path, save_model: Callable[..., Path]
) -> None:
    train = data.load_dataset("digits", split="train")
    test = data.load_dataset("digits", split="test")
    flat = train.x.reshape(len(train.x), -1)
    centroids = np.stack([flat[train.y == k].mean(axis=0) for k in range(10)]).astype(np.float32)
    bias = (-0.5 * (centroids**2).sum(axis=1)).astype(np.float32)
    model = save_model(
        tmp_path / "centroids.onnx",
        [
            helper.make_node("Flatten", ["x"], ["f"]),
            helper.make_node("MatMul", ["f", "C"], ["d"]),
            helper.make_node("Add", ["d", "b"], ["logits"]),
        ],
        [helper.make_tensor_value_info("x", F, ["batch", 1, 8, 8])],
        [helper.make_tensor_value_info("logits", F, ["batch", 10])],
        [_const("C", np.ascontiguousarray(centroids.T)), _const("b", bias)],
    )
    logits = test.x.reshape(len(test.x), -1) @ centroids.T + bias
    expected = metrics.accuracy(test.y, logits.argmax(axis=1))

    r = cli("evaluate", model, "--dataset", "digits", "--json")

    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["task"] == "classification" and out["dataset"] == "digits"
    assert out["metrics"]["accuracy"] == pytest.approx(expected, abs=1e-9)
    assert out["metrics"]["accuracy"] > 0.8
    assert out["metrics"]["samples"] == len(test.y)

    bench = cli("bench", model, "--data", "digits", "--iterations", "5", "--json")
    assert bench.returncode == 0, bench.stderr
    assert json.loads(bench.stdout)["metrics"]["accuracy"] == pytest.approx(expected, abs=1e-9)


def test_evaluate_anomaly_with_a_pca_autoencoder(
    cli: Cli, tmp_path: Path, save_model: Callable[..., Path]
) -> None:
    train = data.load_dataset("anomaly", split="train")
    test = data.load_dataset("anomaly", split="test")
    normal = train.x[train.y == 0] if train.y is not None else train.x
    mu = normal.mean(axis=0)
    _, _, vt = np.linalg.svd(normal - mu, full_matrices=False)
    p = vt[:4].T.astype(np.float32)  # 4 principal components
    proj = (p @ p.T).astype(np.float32)
    model = save_model(
        tmp_path / "pca.onnx",
        [
            helper.make_node("Sub", ["x", "mu"], ["c"]),
            helper.make_node("MatMul", ["c", "P"], ["r"]),
            helper.make_node("Add", ["r", "mu"], ["recon"]),
        ],
        [helper.make_tensor_value_info("x", F, ["batch", test.x.shape[1]])],
        [helper.make_tensor_value_info("recon", F, ["batch", test.x.shape[1]])],
        [_const("mu", mu.astype(np.float32)), _const("P", proj)],
    )
    recon = (test.x - mu) @ proj + mu
    expected = metrics.reconstruction_auc(test.y, test.x, recon)

    r = cli("evaluate", model, "--dataset", "anomaly", "--json")

    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["task"] == "anomaly"
    assert out["metrics"]["roc_auc"] == pytest.approx(expected, abs=1e-6)


def test_evaluate_a_two_input_int64_dataset(
    cli: Cli, tmp_path: Path, save_model: Callable[..., Path]
) -> None:
    test = data.load_dataset("tokens", split="test")
    ids = test.x["input_ids"]
    n_classes = len(test.classes)
    vocab = int(ids.max()) + 1
    emb = np.random.default_rng(0).standard_normal((vocab, n_classes)).astype(np.float32)
    model = save_model(
        tmp_path / "bag.onnx",
        [
            helper.make_node("Gather", ["E", "input_ids"], ["g"]),
            helper.make_node("Cast", ["attention_mask"], ["m"], to=F),
            helper.make_node("Unsqueeze", ["m", "ax2"], ["m3"]),
            helper.make_node("Mul", ["g", "m3"], ["gm"]),
            helper.make_node("ReduceSum", ["gm", "ax1"], ["logits"], keepdims=0),
        ],
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"]),
        ],
        [helper.make_tensor_value_info("logits", F, ["batch", n_classes])],
        [
            _const("E", emb),
            _const("ax1", np.array([1], np.int64)),
            _const("ax2", np.array([2], np.int64)),
        ],
    )
    logits = (emb[ids] * test.x["attention_mask"][..., None]).sum(axis=1)
    expected = metrics.accuracy(test.y, logits.argmax(axis=1))

    r = cli("evaluate", model, "--dataset", "tokens", "--json")

    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["metrics"]["accuracy"] == pytest.approx(expected, abs=1e-9)
