"""What a candidate costs on a target: latency, peak memory and size from its ONNX graph.

The calibrated cost model is ``edgeloop.analysis.estimate`` (graph-reading, per operator). Where
it is not installed yet this falls back to the first-order model the project had before it:
MACs from ``analysis.graph_stats`` through ``hardware.estimate_latency_ms``, and peak memory as
the weights plus the largest set of activations one operator holds at once (from ONNX shape
inference), so the search and the planner run either way and say which model they used.
``measure_latency_ms`` times the model on this machine instead (``--measure``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeloop.artifacts import DeviceProfile

__all__ = ["Cost", "measure_latency_ms", "predict_cost"]


@dataclass(frozen=True)
class Cost:
    """One model's predicted (or measured) cost on one target, at batch 1."""

    latency_ms: float
    peak_memory_bytes: int
    size_bytes: int
    macs: int
    energy_mj: float | None = None
    source: str = "first-order"  # "cost model", "first-order" or "measured"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _bytes_of(vi: Any) -> int:
    import onnx

    t = vi.type.tensor_type
    dims = [d.dim_value if d.HasField("dim_value") else 1 for d in t.shape.dim]
    try:
        item = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(t.elem_type)).itemsize
    except (KeyError, TypeError, ValueError):
        item = 4
    return int(np.prod(dims, dtype=np.int64)) * item if dims else item


def _peak_activation_bytes(path: Path, shapes: dict[str, tuple[int, ...]] | None) -> int:
    """The most activation bytes one operator reads and writes at once, at batch 1."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    for inp in proto.graph.input:  # batch 1 (and the given shapes) for the inference below
        dims = inp.type.tensor_type.shape.dim
        want = (shapes or {}).get(inp.name)
        for i, d in enumerate(dims):
            if want is not None and i < len(want):
                d.dim_value = int(want[i])
            elif not d.HasField("dim_value"):
                d.dim_value = 1
    inferred = onnx.shape_inference.infer_shapes(proto)
    weights = {t.name for t in proto.graph.initializer}
    sizes = {
        vi.name: _bytes_of(vi)
        for vi in (*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output)
    }
    peak = 0
    for node in proto.graph.node:
        held = sum(sizes.get(n, 0) for n in (*node.input, *node.output) if n and n not in weights)
        peak = max(peak, held)
    return peak


def predict_cost(
    model: str | Path,
    profile: DeviceProfile,
    *,
    precision: str = "fp32",
    input_shapes: dict[str, tuple[int, ...]] | None = None,
) -> Cost:
    """The cost of the ONNX ``model`` on ``profile`` at batch 1, from its graph alone."""
    import edgeloop.analysis as analysis

    path = Path(model)
    size = path.stat().st_size
    estimate = getattr(analysis, "estimate", None)
    if estimate is not None:  # the calibrated cost model (issue 21), when installed
        est = estimate(path, profile, precision=None if precision == "fp32" else precision)
        macs = sum(int(getattr(op, "macs", 0) or 0) for op in getattr(est, "per_op", []) or [])
        return Cost(
            latency_ms=float(est.latency_ms),
            peak_memory_bytes=int(est.peak_memory_bytes),
            size_bytes=size,
            macs=macs,
            energy_mj=None if est.energy_mj is None else float(est.energy_mj),
            source="cost model",
        )
    from edgeloop.hardware import estimate_latency_ms

    stats = analysis.graph_stats(path, input_shapes=input_shapes)
    latency = estimate_latency_ms(stats.macs, profile, precision, weight_bytes=stats.weight_bytes)
    peak = stats.weight_bytes + _peak_activation_bytes(path, input_shapes)
    energy = None
    if profile.power_w and profile.power_source != "unknown":
        energy = profile.power_w * latency  # W x ms = mJ
    return Cost(latency, int(peak), size, int(stats.macs), energy, "first-order")


def measure_latency_ms(model: str | Path, *, threads: int = 1, seconds: float = 0.5) -> float:
    """p50 latency of the ONNX ``model`` on this machine at batch 1 (ONNX Runtime, CPU)."""
    from edgeloop.analysis import graph_stats
    from edgeloop.runtime import benchmark

    res = benchmark(
        model, threads=threads, min_seconds=seconds, isolate=False, graph_stats=graph_stats
    )
    return float(res.latency_ms["p50"])
