"""Passes without calibration: dynamic int8, weight-only int4 (MatMulNBits), fp16."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from edgeloop.errors import InputError, PassError
from edgeloop.optimize._model import (
    load_onnx,
    name_nodes,
    save_onnx,
    uses_external_data,
)
from edgeloop.optimize._passes import ModelState, PassContext, StepResult, register_pass
from edgeloop.optimize._preflight import local_profile, preflight
from edgeloop.optimize._quantize import _mixed, _param, _quiet, _src

__all__ = ["DYNAMIC_OP_TYPES", "matmul_weight_bytes"]

# Gather: embedding tables stored int8 and dequantized at lookup (as ORT's default does)
DYNAMIC_OP_TYPES = ("MatMul", "Gemm", "Gather", "Attention", "LSTM", "GRU")


def _named_source(src: Path, ctx: PassContext) -> Path:
    model = load_onnx(src, with_weights=False)
    if not name_nodes(model):
        return src
    full = load_onnx(src)
    name_nodes(full)
    return save_onnx(full, ctx.workdir / f"named_{src.stem}.onnx", external=uses_external_data(src))


def _tensor_bytes(t: onnx.TensorProto) -> int:
    n = int(np.prod(t.dims, dtype=np.int64))
    try:
        item = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(t.data_type)).itemsize
    except (KeyError, TypeError, ValueError):
        item = 1
    return n * item


def matmul_weight_bytes(model: onnx.ModelProto) -> int:
    """Bytes of the constant weights MatMul/Gemm/MatMulNBits nodes read (scales included)."""
    inits = {t.name: t for t in model.graph.initializer}
    total = 0
    for n in model.graph.node:
        if n.op_type in ("MatMul", "Gemm", "MatMulNBits", "MatMulInteger", "DynamicQuantizeMatMul"):
            names = (
                n.input[1:]
                if n.op_type in ("MatMulNBits", "DynamicQuantizeMatMul")
                else n.input[1:2]
            )
            total += sum(_tensor_bytes(inits[i]) for i in names if i in inits)
    return total


def _float_weight_bytes(path: Path) -> int:
    model = load_onnx(path)
    return sum(
        _tensor_bytes(t)
        for t in model.graph.initializer
        if t.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)
        and int(np.prod(t.dims, dtype=np.int64)) > 16
    )


@register_pass("quantize_dynamic", "onnx")
def quantize_dynamic(
    state: ModelState, params: Mapping[str, Any], ctx: PassContext
) -> tuple[ModelState, StepResult]:
    """Dynamic int8: weights int8 (per channel by default), activations quantized at run time."""
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization import quantize_dynamic as ort_quantize_dynamic

    from edgeloop.optimize._smooth import smooth_before_quantize

    smoothed, smoothing = smooth_before_quantize(_src(state, "quantize_dynamic"), params, ctx)
    src = _named_source(smoothed, ctx)
    model = load_onnx(src, with_weights=False)
    pre = preflight(model, local_profile(ctx.options.get("target")))
    per_channel = bool(_param(params, "per_channel", True))
    from edgeloop.optimize._prepare import PER_CHANNEL_OPSET, opset_of

    warnings: list[str] = []
    if per_channel and opset_of(model) < PER_CHANNEL_OPSET:
        per_channel = False
        warnings.append(
            f"opset {opset_of(model)} < {PER_CHANNEL_OPSET}: int8 weights are per tensor "
            "(per-channel needs opset 13)"
        )
    rr = _param(params, "reduce_range", "auto")
    reduce_range = bool(pre["reduce_range"]) if rr == "auto" else bool(rr)
    wt = str(_param(params, "weight_type", "int8")).lower()
    if wt not in ("int8", "uint8"):
        raise InputError(f"weight_type must be int8 or uint8; got {wt!r}")
    op_types = list(params.get("op_types") or DYNAMIC_OP_TYPES)
    external = uses_external_data(src)

    def build(exclude: list[str], out: Path) -> None:
        try:
            with _quiet():
                ort_quantize_dynamic(
                    str(src),
                    str(out),
                    op_types_to_quantize=op_types,
                    per_channel=per_channel,
                    reduce_range=reduce_range,
                    weight_type=QuantType.QInt8 if wt == "int8" else QuantType.QUInt8,
                    nodes_to_exclude=exclude or None,
                    use_external_data_format=external,
                    extra_options={"MatMulConstBOnly": True},
                )
        except Exception as e:
            raise PassError(f"dynamic int8 quantization of {str(src)!r} failed: {e}") from e

    details: dict[str, Any] = {
        "preflight": pre,
        "per_channel": per_channel,
        "reduce_range": reduce_range,
        "weight_type": wt,
        "op_types": op_types,
    }
    if smoothing is not None:
        details["smooth"] = smoothing
    dest = _mixed(
        src, build, ctx.workdir / "quantize_dynamic.onnx", params, ctx, ("MatMul", "Gemm"), details
    )
    out_model = load_onnx(dest, with_weights=False)
    ops = Counter(n.op_type for n in out_model.graph.node)
    details["integer_ops"] = {k: v for k, v in ops.items() if "Integer" in k or "Quant" in k}
    if not details["integer_ops"]:
        raise PassError(
            f"dynamic int8 quantized nothing in {str(src)!r}: no MatMul/Gemm/Gather/Attention/"
            "LSTM/GRU node with constant weights (for a convolutional network use static "
            "int8: --recipe int8 with calibration data)"
        )
    before, after = _float_weight_bytes(src), _float_weight_bytes(dest)
    details["float_weight_bytes"] = {"before": before, "after": after}
    if before and after > before / 2:
        warnings.append(
            f"dynamic int8 left {after / before:.0%} of the float weight bytes float "
            "(it leaves Conv weights alone): the file does not shrink much; for a "
            "convolutional network use static int8 (--recipe int8)"
        )
    left = ops.get("MatMul", 0) + ops.get("Gemm", 0)
    if left:
        warnings.append(
            f"{left} MatMul/Gemm node(s) stay float (activation x activation "
            "products or excluded): dynamic int8 only quantizes constant weights"
        )
    return ModelState("onnx", onnx_path=dest, notes=list(state.notes)), StepResult(
        "quantize_dynamic", dict(params), details, warnings
    )


@register_pass("int4", "onnx")
def int4(
    state: ModelState, params: Mapping[str, Any], ctx: PassContext
) -> tuple[ModelState, StepResult]:
    """Weight-only block-wise int4 for MatMuls with constant weights (MatMulNBits)."""
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    src = _named_source(_src(state, "int4"), ctx)
    block = int(_param(params, "block_size", 32))
    if block < 16 or block & (block - 1):
        raise InputError(f"block_size must be a power of two >= 16; got {block}")
    symmetric = bool(_param(params, "symmetric", True))
    level = params.get("accuracy_level", 4)
    external = uses_external_data(src)

    def build(exclude: list[str], out: Path) -> None:
        try:
            with _quiet():
                q = MatMulNBitsQuantizer(
                    load_onnx(src),
                    bits=4,
                    block_size=block,
                    is_symmetric=symmetric,
                    accuracy_level=None if level is None else int(level),
                    nodes_to_exclude=exclude or [],
                )
                q.process()
        except Exception as e:
            raise PassError(f"int4 weight quantization of {str(src)!r} failed: {e}") from e
        save_onnx(q.model.model, out, external=external)

    details: dict[str, Any] = {"block_size": block, "symmetric": symmetric, "accuracy_level": level}
    dest = _mixed(src, build, ctx.workdir / "int4.onnx", params, ctx, ("MatMul",), details)
    before, after = load_onnx(src), load_onnx(dest)
    details["matmul_weight_bytes_before"] = matmul_weight_bytes(before)
    details["matmul_weight_bytes_after"] = matmul_weight_bytes(after)
    ops = Counter(n.op_type for n in after.graph.node)
    details["matmul_nbits_nodes"] = ops.get("MatMulNBits", 0)
    warnings = []
    if ops.get("MatMul", 0):
        warnings.append(
            f"{ops['MatMul']} MatMul node(s) stay float (no constant 2-D weight, or excluded)"
        )
    if ops.get("MatMulNBits", 0) == 0:
        warnings.append("int4: no MatMul with a constant weight: nothing was quantized")
    return ModelState("onnx", onnx_path=dest, notes=list(state.notes)), StepResult(
        "int4", dict(params), details, warnings
    )


@register_pass("fp16", "onnx")
def fp16(
    state: ModelState, params: Mapping[str, Any], ctx: PassContext
) -> tuple[ModelState, StepResult]:
    """Float16 weights and activations (ONNX Runtime's float16 converter)."""
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    src = _src(state, "fp16")
    model = load_onnx(src)
    block = sorted(set(DEFAULT_OP_BLOCK_LIST) | set(params.get("op_block_list") or []))
    keep_io = bool(_param(params, "keep_io_types", True))
    try:
        with _quiet():
            converted = convert_float_to_float16(
                model,
                keep_io_types=keep_io,
                op_block_list=block,
                node_block_list=list(params.get("exclude") or []) or None,
            )
    except Exception as e:
        raise PassError(f"fp16 conversion of {str(src)!r} failed: {e}") from e
    dest = save_onnx(converted, ctx.workdir / "fp16.onnx", external=uses_external_data(src))
    blocked = Counter(n.op_type for n in model.graph.node if n.op_type in block)
    warnings = [
        f"{v} {k} node(s) stay float32 (not supported in fp16 by ONNX Runtime's CPU kernels)"
        for k, v in blocked.items()
    ]
    warnings.append(
        "on CPUs without native fp16 arithmetic ONNX Runtime may run fp16 slower "
        "than fp32: fp16 is for size, or for GPUs/NPUs"
    )
    details = {"keep_io_types": keep_io, "blocked_ops": dict(blocked)}
    return ModelState("onnx", onnx_path=dest, notes=list(state.notes)), StepResult(
        "fp16", dict(params), details, warnings
    )
