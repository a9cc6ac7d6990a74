"""What a candidate costs on a target: latency, peak memory, energy and size from its graph.

The figures come from the cost model (``edgeloop.analysis.estimate``: the graph ONNX Runtime
would run, priced kernel by kernel on the profile); ``measure_latency_ms`` times the model on
this machine instead (``--measure``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

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
    source: str = "cost model"  # "cost model" or "measured" (latency timed here)
    precision: str = "fp32"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def predict_cost(
    model: str | Path,
    profile: DeviceProfile,
    *,
    precision: str | None = None,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
) -> Cost:
    """The cost of the ONNX ``model`` on ``profile`` at batch 1, from its graph alone.

    ``precision="int8"`` prices a float model as if statically quantized (to screen int8 before
    running the quantizer); None takes the model as it is.
    """
    from edgeloop.analysis import estimate

    path = Path(model)
    est = estimate(path, profile, precision=precision, input_shapes=input_shapes)
    size = path.stat().st_size
    if precision == "int8":  # the quantized file: its int8 weights in place of the float ones
        as_is = estimate(path, profile, input_shapes=input_shapes)
        size = max(est.weight_bytes, size - as_is.weight_bytes + est.weight_bytes)
    return Cost(
        latency_ms=float(est.latency_ms),
        peak_memory_bytes=int(est.peak_memory_bytes),
        size_bytes=int(size),
        macs=int(est.macs),
        energy_mj=None if est.energy_mj is None else float(est.energy_mj),
        source="cost model",
        precision=est.precision,
    )


def measure_latency_ms(model: str | Path, *, threads: int = 1, seconds: float = 0.5) -> float:
    """p50 latency of the ONNX ``model`` on this machine at batch 1 (ONNX Runtime, CPU)."""
    from edgeloop.analysis import graph_stats
    from edgeloop.runtime import benchmark

    res = benchmark(
        model, threads=threads, min_seconds=seconds, isolate=False, graph_stats=graph_stats
    )
    return float(res.latency_ms["p50"])
