"""Fixtures for the optimize tests: small ONNX models built without the zoo, and zoo exports.

Fixture names of the ONNX-side tests start with ``quant_`` (quantize/fuse/recipe tests).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper


def _init(name: str, arr: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(arr.astype(np.float32), name)


def conv_model(seed: int = 0, channels: int = 32, classes: int = 4) -> onnx.ModelProto:
    """Conv -> BatchNorm -> Relu -> Conv -> Relu -> GlobalAveragePool -> Flatten -> Gemm."""
    rng = np.random.default_rng(seed)
    c = channels
    inits = [
        _init("w1", rng.standard_normal((c, 3, 3, 3)) * 0.3),
        _init("b1", rng.standard_normal(c) * 0.1),
        _init("bn_s", 1 + rng.standard_normal(c) * 0.1),
        _init("bn_b", rng.standard_normal(c) * 0.1),
        _init("bn_m", rng.standard_normal(c) * 0.1),
        _init("bn_v", 1 + np.abs(rng.standard_normal(c)) * 0.1),
        _init("w2", rng.standard_normal((c, c, 3, 3)) * 0.2),
        _init("b2", rng.standard_normal(c) * 0.1),
        _init("wf", rng.standard_normal((classes, c)) * 0.5),
        _init("bf", rng.standard_normal(classes) * 0.1),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c1", "bn_s", "bn_b", "bn_m", "bn_v"], ["n1"]),
        helper.make_node("Relu", ["n1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("GlobalAveragePool", ["r2"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "wf", "bf"], ["logits"], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "convnet",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", classes])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def token_model(seed: int = 0, vocab: int = 50, seq: int = 6, dim: int = 32) -> onnx.ModelProto:
    """Two int64 inputs (input_ids, attention_mask): embedding, masked MLP, mean over tokens."""
    rng = np.random.default_rng(seed)
    inits = [
        _init("emb", rng.standard_normal((vocab, dim))),
        _init("w1", rng.standard_normal((dim, 64)) / np.sqrt(dim)),
        _init("w2", rng.standard_normal((64, dim)) / 8),
        numpy_helper.from_array(np.array([2], dtype=np.int64), "axis2"),
    ]
    nodes = [
        helper.make_node("Gather", ["emb", "input_ids"], ["e"]),
        helper.make_node("Cast", ["attention_mask"], ["mf"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["mf", "axis2"], ["m3"]),
        helper.make_node("Mul", ["e", "m3"], ["em"]),
        helper.make_node("MatMul", ["em", "w1"], ["h"]),
        helper.make_node("Relu", ["h"], ["hr"]),
        helper.make_node("MatMul", ["hr", "w2"], ["o"]),
        helper.make_node("ReduceMean", ["o"], ["pooled"], axes=[1], keepdims=0),
    ]
    graph = helper.make_graph(
        nodes,
        "tokens",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", seq]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", seq]),
        ],
        [helper.make_tensor_value_info("pooled", TensorProto.FLOAT, ["batch", dim])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def token_data(n: int = 64, vocab: int = 50, seq: int = 6, seed: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(2, seq + 1, n)
    mask = (np.arange(seq)[None, :] < lengths[:, None]).astype(np.int64)
    return {"input_ids": rng.integers(0, vocab, (n, seq)).astype(np.int64), "attention_mask": mask}


def conv_data(n: int = 64, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Images and the labels the float model itself predicts (so accuracy starts at 1.0)."""
    import onnxruntime as ort

    x = np.random.default_rng(seed).standard_normal((n, 3, 8, 8)).astype(np.float32)
    sess = ort.InferenceSession(
        conv_model().SerializeToString(), providers=["CPUExecutionProvider"]
    )
    y = sess.run(None, {"x": x})[0].argmax(1).astype(np.int64)
    return x, y


@pytest.fixture
def quant_conv(tmp_path: Path) -> Path:
    p = tmp_path / "conv.onnx"
    onnx.save(conv_model(), str(p))
    return p


@pytest.fixture
def quant_conv_npz(tmp_path: Path) -> Path:
    x, y = conv_data()
    p = tmp_path / "conv_data.npz"
    np.savez(p, x=x, y=y)
    return p


@pytest.fixture
def quant_tokens(tmp_path: Path) -> Path:
    p = tmp_path / "tokens.onnx"
    onnx.save(token_model(), str(p))
    return p


@pytest.fixture
def quant_tokens_npz(tmp_path: Path) -> Path:
    p = tmp_path / "tokens.npz"
    np.savez(p, **token_data())
    return p


@pytest.fixture(scope="session")
def quant_zoo_model(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], tuple[Path, str]]:
    """``quant_zoo_model(arch)`` -> (ONNX path of a tiny untrained zoo model, its dataset)."""
    datasets = {
        "cnn": "digits",
        "mobilenet": "shapes",
        "cnn1d": "har",
        "transformer": "tokens",
        "autoencoder": "anomaly",
    }
    cache: dict[str, tuple[Path, str]] = {}

    def build(arch: str) -> tuple[Path, str]:
        if arch not in cache:
            from edgeloop.data import load_dataset
            from edgeloop.zoo import build_model, export_onnx, kwargs_for

            ds = load_dataset(datasets[arch], split="test", seed=0)
            model = build_model(arch, **kwargs_for(arch, ds))
            spec = [
                {"name": n, "shape": list(ds.shapes()[n]), "dtype": ds.dtypes()[n]}
                for n in ds.input_names
            ]
            path = tmp_path_factory.mktemp(f"zoo_{arch}") / f"{arch}.onnx"
            export_onnx(model, path, meta={"input_spec": spec}, check_parity=False)
            cache[arch] = (path, datasets[arch])
        return cache[arch]

    return build


# models as other toolchains export them (weights in Constant nodes, opset 11/12, symbolic batch)
def constants_from_initializers(model: onnx.ModelProto) -> onnx.ModelProto:
    """The same model with each initializer turned into a ``Constant`` node at the graph start."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph
    consts = [helper.make_node("Constant", [], [t.name], value=t) for t in g.initializer]
    names = {t.name for t in g.initializer}
    kept_inputs = [vi for vi in g.input if vi.name not in names]
    del g.input[:]
    g.input.extend(kept_inputs)
    del g.initializer[:]
    nodes = list(g.node)
    del g.node[:]
    g.node.extend([*consts, *nodes])
    onnx.checker.check_model(out)
    return out


def export_foreign(
    arch: str, path: Path, opset: int, *, constants: bool = True, seed: int = 0
) -> Path:
    """Export an (untrained, seeded) zoo ``arch`` at ``opset`` with a symbolic batch dim ``N``."""
    import torch

    from edgeloop.zoo import build_model

    torch.manual_seed(seed)
    kwargs = {
        "mobilenet": {"width": 0.5, "input_size": 32, "num_classes": 4},
        "cnn": {"num_classes": 10},
    }[arch]
    model = build_model(arch, **kwargs).eval()
    shape = {"mobilenet": (1, 3, 32, 32), "cnn": (1, 1, 8, 8)}[arch]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (torch.randn(*shape),),
            str(path),
            dynamo=False,
            opset_version=opset,
            do_constant_folding=False,
            input_names=["x"],
            output_names=["logits"],
            dynamic_axes={"x": {0: "N"}, "logits": {0: "N"}},
        )
    if constants:
        onnx.save(constants_from_initializers(onnx.load(str(path))), str(path))
    return path


@pytest.fixture(scope="session")
def foreign_cnn(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """``foreign_cnn(arch, opset, constants=True)`` -> an exported model's path (cached)."""
    cache: dict[tuple[str, int, bool], Path] = {}

    def build(arch: str, opset: int, constants: bool = True) -> Path:
        key = (arch, opset, constants)
        if key not in cache:
            d = tmp_path_factory.mktemp(f"foreign_{arch}{opset}")
            kind = "const" if constants else "init"
            cache[key] = export_foreign(arch, d / f"{arch}_{kind}.onnx", opset, constants=constants)
        return cache[key]

    return build
