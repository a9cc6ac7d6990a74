"""Build the tiny ONNX kernels that ``edgeloop profile`` times (needs the ``onnx`` package).

The device layer may not import onnx, so the kernels ship as package data under
``src/edgeloop/hardware/kernels/``; a test rebuilds them and checks the shipped bytes match.
Run ``python tools/make_kernels.py`` after changing this file.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from edgeloop.hardware._kernels import (  # noqa: E402
    ADD_DEPTHS,
    ADD_SIZES,
    KERNEL_SPECS,
    KernelSpec,
)

KERNEL_DIR = Path(__file__).resolve().parents[1] / "src" / "edgeloop" / "hardware" / "kernels"
OPSET = 13
IR_VERSION = 7  # readable by every onnxruntime >= 1.10


def _matmul(name: str, op: str, a_type: int, b_type: int, y_type: int) -> onnx.ModelProto:
    """Y[M, N] = A[M, K] @ B[K, N] with every dimension dynamic, so the profiler picks sizes."""
    graph = helper.make_graph(
        [helper.make_node(op, ["A", "B"], ["Y"], name=op)],
        name,
        [
            helper.make_tensor_value_info("A", a_type, ["M", "K"]),
            helper.make_tensor_value_info("B", b_type, ["K", "N"]),
        ],
        [helper.make_tensor_value_info("Y", y_type, ["M", "N"])],
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="edgeloop tools/make_kernels.py",
        ir_version=IR_VERSION,
    )
    onnx.checker.check_model(model)
    return model


def _finish(graph: onnx.GraphProto) -> onnx.ModelProto:
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="edgeloop tools/make_kernels.py",
        ir_version=IR_VERSION,
    )
    onnx.checker.check_model(model)
    return model


def _const(name: str, value: float | int, dtype: type) -> onnx.TensorProto:
    return numpy_helper.from_array(np.array(value, dtype=dtype), name)


def _filled(name: str, shape: tuple[int, ...], value: float | int, dtype: type) -> list:
    """A weight of ``shape`` as ConstantOfShape: folded and prepacked at load, a tiny file."""
    return [
        helper.make_node(
            "Constant",
            [],
            [name + "_shape"],
            value=numpy_helper.from_array(np.array(shape, np.int64)),
        ),
        helper.make_node(
            "ConstantOfShape",
            [name + "_shape"],
            [name],
            value=numpy_helper.from_array(np.array([value], dtype=dtype)),
        ),
    ]


def _cost_kernel(spec: KernelSpec, depth: int) -> onnx.ModelProto:
    """``depth`` kernels of edgeloop.hardware._kernels.KERNEL_SPECS in a chain, fixed shapes,
    one constant weight they share (a 1x1 convolution whose channels change alternates it with
    the reverse one, so the chain closes)."""
    u8, f32 = TensorProto.UINT8, TensorProto.FLOAT
    in_type = u8 if spec.int8 else f32
    inits: list[onnx.TensorProto] = []
    if spec.is_conv:
        c_in, c_out, h, k, group = spec.dims
        w_shape = (c_out, c_in // group, *([k] * spec.rank))
        out_shape: tuple[int, ...] = (1, c_out, *([h] * spec.rank))
        attrs = {
            "pads": [k // 2] * (2 * spec.rank),
            "group": group,
            "kernel_shape": [k] * spec.rank,
        }
        op = "QLinearConv" if spec.int8 else "Conv"
    else:
        m, kk, n = spec.dims
        w_shape = (kk, n)
        out_shape = (m, n)
        attrs = {}
        op = "QLinearMatMul" if spec.int8 else "MatMul"
    value, dtype = (1, np.int8) if spec.int8 else (0.01, np.float32)
    nodes = _filled("W", w_shape, value, dtype)
    weights = ["W"]
    if spec.is_conv and spec.dims[0] != spec.dims[1]:  # c_in -> c_out, then back, alternately
        nodes += _filled("V", (w_shape[1], w_shape[0], *w_shape[2:]), value, dtype)
        weights.append("V")
    x = spec.input_name
    if spec.int8:
        inits = [
            _const("xs", 0.02, np.float32),
            _const("xz", 128, np.uint8),
            _const("ws", 0.01, np.float32),
            _const("wz", 0, np.int8),
        ]
    names = [x, *(f"h{i}" for i in range(1, depth)), "Y"]
    for i, (a, b) in enumerate(zip(names, names[1:], strict=False)):
        w = weights[i % len(weights)]
        ins = [a, "xs", "xz", w, "ws", "wz", "xs", "xz"] if spec.int8 else [a, w]
        nodes.append(helper.make_node(op, ins, [b], name=f"{op}{i}", **attrs))
    graph = helper.make_graph(
        nodes,
        spec.file(depth).removesuffix(".onnx"),
        [helper.make_tensor_value_info(x, in_type, list(spec.input_shape))],
        [helper.make_tensor_value_info("Y", in_type, list(out_shape))],
        inits,
    )
    return _finish(graph)


def _relu_chain(n: int) -> onnx.ModelProto:
    names = ["X", *(f"r{i}" for i in range(1, n)), "Y"]
    nodes = [
        helper.make_node("Relu", [a], [b], name=f"relu{i}")
        for i, (a, b) in enumerate(zip(names, names[1:], strict=False))
    ]
    graph = helper.make_graph(
        nodes,
        f"relu_chain_{n}",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 16])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, 16])],
    )
    return _finish(graph)


def _add_chain(n: int, depth: int) -> onnx.ModelProto:
    """``depth`` Adds of a broadcast (64,) bias to X (1, n/64, 64): element-wise work as models
    do it (a bias, a residual), timed at two sizes for its fixed and per-element costs."""
    names = ["X", *(f"a{i}" for i in range(1, depth)), "Y"]
    nodes = [
        helper.make_node("Add", [a, "bias"], [b], name=f"add{i}")
        for i, (a, b) in enumerate(zip(names, names[1:], strict=False))
    ]
    shape = [1, n // 64, 64]
    graph = helper.make_graph(
        nodes,
        f"add_{n}_d{depth}",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, shape)],
        [numpy_helper.from_array(np.full(64, 0.5, np.float32), "bias")],
    )
    return _finish(graph)


def build_kernels() -> dict[str, bytes]:
    """File name -> serialized model."""
    kernels = {
        # fp32 GEMM: MLAS SGEMM (AVX2/AVX-512 FMA on x86, NEON FMLA on Arm)
        "matmul_fp32.onnx": _matmul(
            "matmul_fp32", "MatMul", TensorProto.FLOAT, TensorProto.FLOAT, TensorProto.FLOAT
        ),
        # int8 GEMM, u8 x s8 -> s32: MLAS QGEMM (VNNI/AMX on x86, SDOT/I8MM on Arm), the path
        # dynamically and statically quantized MatMuls take
        "matmul_int8.onnx": _matmul(
            "matmul_int8", "MatMulInteger", TensorProto.UINT8, TensorProto.INT8, TensorProto.INT32
        ),
        "relu_chain_1.onnx": _relu_chain(1),
        "relu_chain_64.onnx": _relu_chain(64),
        **{f"add_{n}_d{d}.onnx": _add_chain(n, d) for n in ADD_SIZES for d in ADD_DEPTHS},
    }
    # the cost model's kernels (edgeloop.analysis.estimate reads what profile measures)
    kernels.update(
        {spec.file(d): _cost_kernel(spec, d) for spec in KERNEL_SPECS for d in spec.depths}
    )
    return {name: m.SerializeToString(deterministic=True) for name, m in kernels.items()}


def main() -> int:
    KERNEL_DIR.mkdir(parents=True, exist_ok=True)
    for name, data in build_kernels().items():
        (KERNEL_DIR / name).write_bytes(data)
        print(f"wrote {KERNEL_DIR / name} ({len(data)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
