"""Build the tiny ONNX kernels that ``edgeloop profile`` times (needs the ``onnx`` package).

The device layer may not import onnx, so the kernels ship as package data under
``src/edgeloop/hardware/kernels/``; a test rebuilds them and checks the shipped bytes match.
Run ``python tools/make_kernels.py`` after changing this file.
"""

from __future__ import annotations

import sys
from pathlib import Path

import onnx
from onnx import TensorProto, helper

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
    }
    return {name: m.SerializeToString(deterministic=True) for name, m in kernels.items()}


def main() -> int:
    KERNEL_DIR.mkdir(parents=True, exist_ok=True)
    for name, data in build_kernels().items():
        (KERNEL_DIR / name).write_bytes(data)
        print(f"wrote {KERNEL_DIR / name} ({len(data)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
