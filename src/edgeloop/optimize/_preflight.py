"""Int8 preflight: will int8 be faster on this target, in which format, and did the runtime fuse it.

Before quantizing, the target's ISA decides: x86 with VNNI (avx512_vnni, avx_vnni) or AMX runs
int8 dot products natively (U8S8 activations uint8, weights int8, no range reduction); x86
with AVX2/AVX-512 but no VNNI multiplies u8 by s8 into saturating int16 pairs, so weights
should use 7 bits (``reduce_range``); Arm with the dot-product extension (asimddp, i8mm) runs
S8S8 natively; CPUs with none of these rarely gain from int8. QDQ is the format ONNX Runtime's
CPU kernels are optimised for (QOperator only for runtimes that need it).

After quantizing, :func:`unfused_qdq` lets ONNX Runtime optimise the QDQ graph the way it would
at load time and counts the QuantizeLinear/DequantizeLinear nodes it could not fold into
integer kernels: each is a float round trip that costs time. That is usually why users find
int8 slower than fp32.
"""

from __future__ import annotations

import functools
import platform
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import onnx

from edgeloop.artifacts import DeviceProfile
from edgeloop.runtime import save_optimized

__all__ = ["Preflight", "local_profile", "preflight", "unfused_qdq"]

Preflight = dict[str, Any]

_X86 = ("x86_64", "amd64", "i686", "x86")
_ARM = ("aarch64", "arm64", "armv8", "armv7l", "arm")
_INT_OPS = (
    "QLinear",
    "QGemm",
    "QAttention",
    "MatMulInteger",
    "ConvInteger",
    "DynamicQuantize",
    "MatMulNBits",
)
_QUANT_OPS = {"Conv", "MatMul", "Gemm", "ConvTranspose", "Attention", "LSTM", "GRU"}


def local_profile(target: str | DeviceProfile | None = None) -> DeviceProfile | None:
    """The target's profile: given, a built-in target by name, or this machine's CPU and ISA
    (read from the OS, no benchmark: the preflight needs only the instruction sets)."""
    if isinstance(target, DeviceProfile):
        return target
    import edgeloop.hardware as hw

    if target is not None:
        return hw.load_target(target)
    return _this_machine()


@functools.lru_cache(maxsize=1)
def _this_machine() -> DeviceProfile:
    import edgeloop.hardware as hw

    return DeviceProfile(
        name="this machine",
        source="measured",
        arch=platform.machine(),
        cpu_model=hw.cpu_model(),
        isa=tuple(hw.isa_features()),
    )


def preflight(model: onnx.ModelProto, profile: DeviceProfile | None) -> Preflight:
    """Say whether int8 pays off on ``profile`` and which settings suit it."""
    ops = Counter(n.op_type for n in model.graph.node)
    quantizable = sum(v for k, v in ops.items() if k in _QUANT_OPS)
    report: Preflight = {
        "target": profile.name if profile else "unknown",
        "arch": profile.arch if profile else "unknown",
        "isa": sorted(profile.isa) if profile else [],
        "quantizable_nodes": quantizable,
        "format": "QDQ",
        "notes": [],
    }
    isa = {s.lower() for s in (profile.isa if profile else ())}
    arch = (profile.arch if profile else "").lower()
    if arch in _X86 or any(s.startswith(("avx", "sse")) for s in isa):
        if isa & {"amx_int8", "amx-int8"}:
            verdict, why = "faster", "AMX int8 tiles and VNNI: int8 GEMMs run natively"
            act, reduce = "QUInt8", False
        elif isa & {"avx512_vnni", "avx512vnni", "avx_vnni", "avxvnni", "avx_vnni_int8"}:
            verdict, why = "faster", "VNNI dot products (vpdpbusd) run u8 x s8 natively"
            act, reduce = "QUInt8", False
        elif isa & {"avx2", "avx512f", "avx512bw"}:
            verdict = "likely faster"
            why = "AVX2/AVX-512 without VNNI: u8 x s8 pairs saturate int16, use 7-bit weights"
            act, reduce = "QUInt8", True
        else:
            verdict, why = "unlikely faster", "no AVX2/VNNI: int8 kernels fall back to slow paths"
            act, reduce = "QUInt8", True
        report.update(weight_type="QInt8", activation_type=act, reduce_range=reduce)
    elif arch in _ARM or isa & {"neon", "asimd", "asimddp", "i8mm"}:
        if isa & {"asimddp", "dotprod", "i8mm"}:
            verdict, why = "faster", "Arm dot-product (sdot/udot) runs int8 natively"
        else:
            verdict, why = "unlikely faster", "Arm without the dot-product extension"
        report.update(weight_type="QInt8", activation_type="QInt8", reduce_range=False)
    else:
        verdict, why = "unknown", "target ISA unknown: measure before relying on int8"
        report.update(weight_type="QInt8", activation_type="QUInt8", reduce_range=False)
    report["int8_verdict"] = verdict
    report["reason"] = why
    if quantizable == 0:
        report["int8_verdict"] = "no gain"
        report["notes"].append("the graph has no Conv/MatMul/Gemm: nothing heavy to quantize")
    report["format_reason"] = (
        "ONNX Runtime's CPU kernels are tuned for QDQ graphs; QOperator only for runtimes "
        "that cannot fuse QDQ"
    )
    return report


def unfused_qdq(path: str | Path) -> dict[str, Any]:
    """Optimise the QDQ model as ORT does at load time; count the Q/DQ nodes left unfused."""
    with tempfile.TemporaryDirectory(prefix="edgeloop-qdq-") as tmp:
        out = Path(tmp) / "optimized.onnx"
        save_optimized(path, out, graph_optimization="extended")
        optimized = onnx.load(str(out), load_external_data=False)
    before = Counter(n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node)
    nodes = list(optimized.graph.node)
    producers = {o: n for n in nodes for o in n.output}
    inputs = {i.name for i in optimized.graph.input}
    outputs = {o.name for o in optimized.graph.output}
    q_ops = ("QuantizeLinear", "DequantizeLinear")
    left = [n for n in nodes if n.op_type in q_ops]
    float_consumers: Counter[str] = Counter()
    for n in nodes:
        if n.op_type in q_ops:
            continue
        for i in n.input:
            p = producers.get(i)
            if p is not None and p.op_type == "DequantizeLinear":
                float_consumers[n.op_type] += 1
    # one Q at each float input and one DQ at each float output are expected
    boundary = sum(
        1
        for n in left
        if (n.op_type == "QuantizeLinear" and n.input[0] in inputs)
        or (n.op_type == "DequantizeLinear" and n.output[0] in outputs)
    )
    return {
        "qdq_nodes_before": before["QuantizeLinear"] + before["DequantizeLinear"],
        "qdq_nodes_left": len(left),
        "at_boundaries": boundary,
        "unfused": len(left) - boundary,
        "float_ops_fed_by_dq": dict(float_consumers.most_common()),
        "integer_ops": dict(
            Counter(n.op_type for n in nodes if n.op_type.startswith(_INT_OPS)).most_common()
        ),
    }
