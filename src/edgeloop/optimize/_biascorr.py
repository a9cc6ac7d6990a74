"""Bias correction for static int8: fold each quantized Conv/Gemm's mean output error into its bias.

Rounding weights to int8 shifts a layer's outputs by a systematic amount per output channel
(the mean of ``(W_q - W) x`` over the data). Measured on calibration data, that shift is
subtracted from the layer's bias (Nagel et al., "Data-Free Quantization", empirical bias
correction; NNCF does the same). The quantized model's node keeps the original node's name, so
each layer's float and int8 outputs are read from the two models side by side, in one run each.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from edgeloop.optimize._model import load_onnx, save_onnx, uses_external_data

__all__ = ["bias_correct", "final_error", "output_error"]

_OPS = ("Conv", "Gemm")


def _producers(graph: onnx.GraphProto) -> dict[str, onnx.NodeProto]:
    return {o: n for n in graph.node for o in n.output}


def _targets(q: onnx.ModelProto, f: onnx.ModelProto) -> list[tuple[onnx.NodeProto, str]]:
    """(quantized node, float output name) for each Conv/Gemm with a bias in both models."""
    fnodes = {n.name: n for n in f.graph.node if n.name and n.op_type in _OPS}
    out = []
    for n in q.graph.node:
        fn = fnodes.get(n.name)
        if fn is None or n.op_type not in _OPS or len(n.input) < 3 or not n.input[2]:
            continue
        out.append((n, fn.output[0]))
    return out


def _run(model: onnx.ModelProto, names: list[str], feeds: Mapping[str, np.ndarray]) -> list[Any]:
    """The named tensors of ``model`` on ``feeds`` (graph optimisation off: Q/DQ stay apart, so
    an inner tensor reads as the int8 arithmetic gives it)."""
    from edgeloop.runtime import Session

    m = onnx.ModelProto()
    m.CopyFrom(model)
    have = {o.name for o in m.graph.output}
    for name in names:
        if name not in have:
            m.graph.output.append(onnx.ValueInfoProto(name=name))
    sess = Session(
        m.SerializeToString(),
        threads=1,
        providers=["CPUExecutionProvider"],
        graph_optimization="disable",
    )
    wanted = set(sess.input_names)
    res = sess.run_unchecked({k: v for k, v in feeds.items() if k in wanted}, names)
    return [res[n] for n in names]


def _channel_mean(diff: np.ndarray, op: str) -> np.ndarray:
    if op == "Gemm" or diff.ndim < 2:
        return np.asarray(diff.reshape(-1, diff.shape[-1]).mean(axis=0), dtype=np.float64)
    axes = tuple(i for i in range(diff.ndim) if i != 1)
    return np.asarray(diff.mean(axis=axes), dtype=np.float64)


def output_error(
    quantized: onnx.ModelProto, float_model: onnx.ModelProto, feeds: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Per quantized Conv/Gemm node (by name): the mean int8-minus-float output per channel."""
    targets = _targets(quantized, float_model)
    if not targets:
        return {}
    qout = _run(quantized, [n.output[0] for n, _ in targets], feeds)
    fout = _run(float_model, [f for _, f in targets], feeds)
    return {
        n.name: _channel_mean(np.asarray(a, np.float64) - np.asarray(b, np.float64), n.op_type)
        for (n, _), a, b in zip(targets, qout, fout, strict=True)
    }


def _apply(
    node: onnx.NodeProto,
    err: np.ndarray,
    inits: dict[str, onnx.TensorProto],
    prod: dict[str, onnx.NodeProto],
) -> bool:
    """Subtract ``err`` from ``node``'s bias in place; False when its bias is not a constant."""
    bias = node.input[2]
    dq = prod.get(bias)
    try:
        if bias in inits:
            t = inits[bias]
            b = numpy_helper.to_array(t).astype(np.float64)
            t.CopyFrom(numpy_helper.from_array((b - err).astype(np.float32), t.name))
            return True
        if dq is None or dq.op_type != "DequantizeLinear" or dq.input[0] not in inits:
            return False
        t, scale_t = inits[dq.input[0]], inits.get(dq.input[1])
        if scale_t is None:
            return False
        b = numpy_helper.to_array(t).astype(np.int64)
        scale = numpy_helper.to_array(scale_t).astype(np.float64)
        step = np.rint(err / scale).astype(np.int64)
        info = np.iinfo(np.int32)
        new = np.clip(b - step, info.min, info.max).astype(np.int32)
        t.CopyFrom(numpy_helper.from_array(new, t.name))
        return True
    except ValueError:  # shapes that do not broadcast: leave the layer as it is
        return False


def bias_correct(
    qdq_path: Path,
    float_path: Path,
    feeds: Mapping[str, np.ndarray],
    out: Path,
    max_layers: int = 256,
) -> tuple[Path, dict[str, Any]]:
    """Write ``qdq_path`` with each Conv/Gemm bias corrected by its mean error on ``feeds``.

    Layers are corrected in graph order, each measured after the ones before it were corrected
    (an upstream correction changes what reaches the layers below). A float bias initializer
    has the error subtracted; an int32 bias behind DequantizeLinear (what ONNX Runtime's QDQ
    quantizer writes) has it subtracted in units of its scale. At most ``max_layers`` layers
    (one run of the model each). Returns the written path and what was corrected.
    """
    q = load_onnx(qdq_path)
    f = load_onnx(float_path)
    targets = _targets(q, f)[:max_layers]
    inits = {t.name: t for t in q.graph.initializer}
    prod = _producers(q.graph)
    corrected, skipped, first_errors = 0, [], []
    if targets:
        fout = _run(f, [fo for _, fo in targets], feeds)
        for i, (node, _) in enumerate(targets):
            (qo,) = _run(q, [node.output[0]], feeds)
            err = _channel_mean(
                np.asarray(qo, np.float64) - np.asarray(fout[i], np.float64), node.op_type
            )
            first_errors.append(float(np.abs(err).mean()))
            if _apply(node, err, inits, prod):
                corrected += 1
            else:
                skipped.append(node.name)
    dest = save_onnx(q, out, external=uses_external_data(qdq_path))
    details = {
        "corrected_layers": corrected,
        "skipped_layers": skipped,
        "mean_abs_channel_error_corrected": float(np.mean(first_errors)) if first_errors else 0.0,
    }
    return dest, details


def final_error(
    model: onnx.ModelProto, float_model: onnx.ModelProto, feeds: Mapping[str, np.ndarray]
) -> float:
    """Mean absolute difference of the first graph output against the float model's."""
    name = float_model.graph.output[0].name
    (a,) = _run(model, [name], feeds)
    (b,) = _run(float_model, [name], feeds)
    return float(np.mean(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))
