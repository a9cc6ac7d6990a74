"""Each architecture: build, forward, train a little, checkpoint, export with parity."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from edgeloop.artifacts import ModelCard
from edgeloop.data import load_dataset
from edgeloop.errors import UnknownNameError
from edgeloop.zoo import (
    build_model,
    export_onnx,
    forward,
    list_architectures,
    load_checkpoint,
    to_tensors,
    train,
)

Tiny = tuple[str, dict[str, Any], str, dict[str, Any]]


def test_list_architectures() -> None:
    assert list_architectures() == [
        "autoencoder",
        "cnn",
        "cnn1d",
        "mbconv",
        "mobilenet",
        "transformer",
    ]


def test_forward_shapes_match_the_task(tiny: Tiny) -> None:
    arch, kwargs, dataset, options = tiny
    data = load_dataset(dataset, "test", **options).subset(4)
    from edgeloop.zoo import kwargs_for

    model = build_model(arch, **{**kwargs_for(arch, data), **kwargs}).eval()
    out = forward(model, to_tensors(data.x))
    if data.task == "anomaly":
        assert out.shape == data.inputs["input"].shape
    else:
        assert out.shape == (4, len(data.classes))
    assert torch.isfinite(out).all()


def test_train_checkpoint_export_parity(tiny: Tiny, tmp_path: Path) -> None:
    arch, kwargs, dataset, options = tiny
    result = train(
        arch, dataset, 1, out=tmp_path / "m.pt", dataset_options=options, threads=1, **kwargs
    )
    assert result.checkpoint == tmp_path / "m.pt"
    model, meta = load_checkpoint(tmp_path / "m.pt")
    assert meta["arch"] == arch and meta["dataset"]["name"] == dataset
    assert meta["metrics"] == pytest.approx(result.metrics)

    card = export_onnx(tmp_path / "m.pt", tmp_path / "m.onnx")

    proto = onnx.load(str(tmp_path / "m.onnx"))
    assert proto.opset_import[0].version >= 17
    names = [i.name for i in proto.graph.input]
    assert names == [s["name"] for s in meta["input_spec"]]
    assert all(i.type.tensor_type.shape.dim[0].dim_param == "batch" for i in proto.graph.input)
    parity = card.extra["export"]["parity"]
    assert parity["max_abs_diff"] < 1e-4 and parity["inputs"] == "test data"
    saved = ModelCard.load(tmp_path / "m.onnx.card.json")
    assert saved.sha256 == card.sha256 and saved.architecture == arch
    assert {r.role for r in saved.lineage} == {"dataset", "source_model"}
    # the ONNX model at a batch size it was not exported with agrees with PyTorch
    data = load_dataset(dataset, "test", **options).subset(5)
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    got = sess.run(None, data.inputs)[0]
    with torch.no_grad():
        ref = forward(model, to_tensors(data.x)).numpy()
    np.testing.assert_allclose(got, ref, atol=1e-4)


def test_transformer_graph_has_int64_inputs_and_matmuls(tmp_path: Path) -> None:
    model = build_model("transformer", vocab_size=50, num_classes=3, max_len=20, dim=16, heads=2)
    spec = [
        {"name": "input_ids", "shape": [20], "dtype": "int64"},
        {"name": "attention_mask", "shape": [20], "dtype": "int64"},
    ]
    meta = {"input_spec": spec, "arch_kwargs": {"vocab_size": 50}, "output_names": ["logits"]}
    card = export_onnx(model, tmp_path / "t.onnx", meta=meta)
    proto = onnx.load(str(tmp_path / "t.onnx"))
    types = {i.name: i.type.tensor_type.elem_type for i in proto.graph.input}
    assert types == {"input_ids": onnx.TensorProto.INT64, "attention_mask": onnx.TensorProto.INT64}
    ops = [n.op_type for n in proto.graph.node]
    assert ops.count("MatMul") + ops.count("Gemm") >= 6  # qkv, scores, values, proj, ff x2
    assert [o.name for o in card.outputs] == ["logits"]


def test_padding_does_not_change_transformer_output() -> None:
    model = build_model("transformer", vocab_size=50, num_classes=3, max_len=12, dim=16, heads=2)
    model.eval()
    ids = torch.randint(1, 50, (1, 12))
    mask = torch.ones(1, 12, dtype=torch.long)
    mask[0, 8:] = 0
    other = ids.clone()
    other[0, 8:] = 7  # change only padded positions
    with torch.no_grad():
        a, b = model(ids, mask), model(other, mask)
    torch.testing.assert_close(a, b)


def test_mobilenet_at_224_has_mobilenet_v1_shape() -> None:
    model = build_model("mobilenet", num_classes=1000, input_size=224)
    params = sum(p.numel() for p in model.parameters())
    assert 4.1e6 < params < 4.3e6  # MobileNetV1 1.0: 4.2 M parameters
    with torch.no_grad():
        feats = model.features[:-2](torch.zeros(1, 3, 224, 224))
    assert feats.shape == (1, 1024, 7, 7)


def test_width_multiplier_scales_channels() -> None:
    small = build_model("mobilenet", width=0.25, input_size=32)
    large = build_model("mobilenet", width=0.5, input_size=32)
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in large.parameters())


def test_unknown_arch_and_option_name_the_known_ones() -> None:
    with pytest.raises(UnknownNameError, match="unknown architecture 'resnet'.*cnn1d"):
        build_model("resnet")
    with pytest.raises(UnknownNameError, match="takes no option.*depth.*in_channels"):
        build_model("cnn", depth=3)


def test_training_is_deterministic_by_seed(tmp_path: Path) -> None:
    kw: dict[str, Any] = {"dataset_options": {"n": 300}, "threads": 1, "hidden": 16, "latent": 4}
    a = train("autoencoder", "anomaly", 2, seed=1, **kw)
    b = train("autoencoder", "anomaly", 2, seed=1, **kw)
    c = train("autoencoder", "anomaly", 2, seed=2, **kw)
    for pa, pb in zip(a.model.parameters(), b.model.parameters(), strict=True):
        assert torch.equal(pa, pb)
    assert a.fit.history == b.fit.history
    assert a.fit.history != c.fit.history


def test_card_json_is_next_to_the_model(tmp_path: Path) -> None:
    model = build_model("autoencoder", in_features=6, hidden=8, latent=2)
    export_onnx(model, tmp_path / "ae.onnx", input_shape=(1, 6))
    data = json.loads((tmp_path / "ae.onnx.card.json").read_text())
    assert data["kind"] == "model_card" and data["inputs"][0]["shape"] == ["batch", 6]
    assert data["export"]["parity"]["inputs"] == "random"


def test_parity_failure_writes_nothing(tmp_path: Path) -> None:
    from edgeloop.errors import ParityError

    model = build_model("transformer", vocab_size=50, num_classes=3, max_len=20, dim=16, heads=2)
    spec = [
        {"name": "input_ids", "shape": [20], "dtype": "int64"},
        {"name": "attention_mask", "shape": [20], "dtype": "int64"},
    ]
    meta = {"input_spec": spec, "arch_kwargs": {"vocab_size": 50}}
    with pytest.raises(ParityError, match="differs from PyTorch by up to"):
        export_onnx(model, tmp_path / "t.onnx", meta=meta, atol=0.0, rtol=0.0)
    assert list(tmp_path.iterdir()) == []


def test_train_an_autoencoder_on_a_users_unlabelled_npz(tmp_path: Path) -> None:
    x = np.random.default_rng(0).normal(size=(120, 6)).astype(np.float32)
    np.savez(tmp_path / "normal.npz", x=x)
    result = train(
        "autoencoder",
        tmp_path / "normal.npz",
        1,
        out=tmp_path / "ae.pt",
        threads=1,
        hidden=8,
        latent=2,
    )
    _, meta = load_checkpoint(tmp_path / "ae.pt")
    assert meta["task"] == "anomaly" and meta["input_spec"][0]["shape"] == [6]
    assert result.metrics["score_mean"] > 0
    card = export_onnx(tmp_path / "ae.pt", tmp_path / "ae.onnx")
    assert card.extra["export"]["parity"]["inputs"] == "test data"
    assert card.dataset == "normal.npz" and card.task == "anomaly"


def test_dynamo_exporter_on_request(tmp_path: Path) -> None:
    model = build_model("cnn", width=8)
    card = export_onnx(model, tmp_path / "d.onnx", input_shape=(1, 1, 8, 8), exporter="dynamo")
    assert card.extra["export"]["exporter"] == "dynamo"
    assert card.extra["export"]["opset"] >= 18
    assert card.inputs[0].shape[0] == "batch"
