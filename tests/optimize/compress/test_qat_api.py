"""Quantization-aware training exported as QDQ ONNX that ONNX Runtime runs."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch

from edgeloop.optimize import export_qdq, qat


def test_qat_zoo_model_exports_int8_qdq_that_onnxruntime_runs(
    compress_zoo_model: Any, compress_digits: Any, tmp_path: Path
) -> None:
    train, val = compress_digits
    res = qat(compress_zoo_model, train, val, epochs=1)
    d = res.details
    assert d["bn_folded"] is True
    assert d["accuracy_after"] > d["accuracy_float"] - 0.05
    path = export_qdq(res.model, tmp_path / "q.onnx", input_shape=(1, 8, 8))
    model = onnx.load(path)
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops
    assert "BatchNormalization" not in ops
    int8 = [i for i in model.graph.initializer if i.data_type == onnx.TensorProto.INT8]
    assert len(int8) >= 4  # three conv weights and the classifier stored as int8
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = val.x[:64]
    got = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    ref = res.model.eval()(torch.from_numpy(x)).detach().numpy()
    assert (got.argmax(1) == ref.argmax(1)).mean() > 0.95


def test_qat_user_module_and_epoch_zero_is_calibration_only(
    compress_user_trained: Any, compress_digits: Any, tmp_path: Path
) -> None:
    train, val = compress_digits
    res = qat(copy.deepcopy(compress_user_trained), train, val, epochs=0)
    assert res.details["train_seconds"] == 0.0
    assert res.details["accuracy_after"] == res.details["accuracy_fake_quant_before"]
    path = export_qdq(res.model, tmp_path / "u.onnx", input_shape=(1, 8, 8))
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = sess.run(None, {sess.get_inputs()[0].name: np.zeros((3, 1, 8, 8), np.float32)})[0]
    assert out.shape == (3, 10)
