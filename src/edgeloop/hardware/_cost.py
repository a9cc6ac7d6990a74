"""A first-order latency model: compute time from MACs, or weight streaming, whichever is longer."""

from __future__ import annotations

from edgeloop.artifacts import DeviceProfile
from edgeloop.errors import InputError

__all__ = ["BUILTIN_EFFICIENCY", "estimate_latency_ms"]

# Built-in targets quote derived peaks (clock x SIMD lanes x cores). Small models reach only a
# part of that; this assumed fraction puts builtin estimates nearer measured ones. A measured
# profile's GOPS already come from real GEMM kernels and use efficiency 1.
BUILTIN_EFFICIENCY = 0.4

_INT8 = {"int8", "uint8", "qdq", "qoperator"}
_FLOAT = {"fp32", "float32", "fp16", "float16", "bf16", "bfloat16"}


def estimate_latency_ms(
    macs: int,
    profile: DeviceProfile,
    dtype: str = "fp32",
    *,
    weight_bytes: int | None = None,
    efficiency: float | None = None,
) -> float:
    """Estimated milliseconds for one inference of ``macs`` multiply-accumulates.

    ``dtype`` selects the profile's int8 or fp32 throughput (fp16/bf16 use fp32: ONNX Runtime's
    CPU provider computes most of them in fp32). With ``weight_bytes`` and a known bandwidth,
    the time to stream the weights once is a lower bound too.
    """
    kind = dtype.lower()
    if kind not in _INT8 | _FLOAT:
        raise InputError(f"dtype {dtype!r} is not one of {', '.join(sorted(_INT8 | _FLOAT))}")
    if macs < 0:
        raise InputError(f"macs must be non-negative, got {macs}")
    gops = profile.int8_gops if kind in _INT8 else profile.fp32_gops
    if not gops:
        which = "int8" if kind in _INT8 else "fp32"
        raise InputError(f"target {profile.name!r} has no {which} throughput figure")
    eff = (
        efficiency
        if efficiency is not None
        else (1.0 if profile.source == "measured" else BUILTIN_EFFICIENCY)
    )
    if not 0 < eff <= 1:
        raise InputError(f"efficiency must be in (0, 1], got {eff}")
    compute_ms = 2.0 * macs / (gops * 1e9 * eff) * 1e3
    memory_ms = 0.0
    if weight_bytes and profile.mem_bandwidth_gbps:
        memory_ms = weight_bytes / (profile.mem_bandwidth_gbps * 1e9) * 1e3
    return max(compute_ms, memory_ms)
