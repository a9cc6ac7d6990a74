"""Short measurements: GEMM throughput on ONNX Runtime, memory bandwidth, RAPL energy."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

__all__ = ["RaplMeter", "gemm_gops", "kernel_bytes", "memory_bandwidth_gbps"]

RAPL_ROOT = Path("/sys/class/powercap")


def kernel_bytes(name: str) -> bytes:
    """A prebuilt kernel shipped with the package (see tools/make_kernels.py)."""
    return resources.files("edgeloop.hardware").joinpath("kernels", name).read_bytes()


def _time_runs(fn: Callable[[], object], seconds: float, min_runs: int = 3) -> list[float]:
    fn()  # warm-up: first-run allocation and packing
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_runs or time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def gemm_gops(
    dtype: str, *, size: int = 512, threads: int | None = None, seconds: float = 0.5
) -> float:
    """Measured GEMM throughput in GOPS (a multiply-accumulate counts as 2 operations).

    ``dtype`` is ``fp32`` (MatMul) or ``int8`` (MatMulInteger, uint8 x int8 -> int32). The
    best of runs of a ``size``-cubed product on ``threads`` intra-op threads (the best run, as
    STREAM reports bandwidth: other processes can only slow a run down, never speed it up).
    """
    from edgeloop.runtime import Session

    name = {"fp32": "matmul_fp32.onnx", "int8": "matmul_int8.onnx"}[dtype]
    sess = Session(kernel_bytes(name), threads=threads or None, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feeds: dict[str, np.ndarray]
    if dtype == "fp32":
        feeds = {
            "A": rng.standard_normal((size, size), dtype=np.float32),
            "B": rng.standard_normal((size, size), dtype=np.float32),
        }
    else:
        feeds = {
            "A": rng.integers(0, 256, (size, size), dtype=np.uint8),
            "B": rng.integers(-128, 128, (size, size), dtype=np.int8),
        }
    times = _time_runs(lambda: sess.run_unchecked(feeds), seconds)
    return 2.0 * size**3 / min(times) / 1e9


def memory_bandwidth_gbps(mib: int = 64, seconds: float = 0.3) -> float:
    """Streaming copy bandwidth in GB/s (bytes read plus bytes written), best of the runs."""
    n = mib * 2**20 // 8
    src = np.ones(n, dtype=np.float64)
    dst = np.empty_like(src)
    times = _time_runs(lambda: np.copyto(dst, src), seconds)
    return 2.0 * src.nbytes / min(times) / 1e9


@dataclass
class _Zone:
    energy: Path
    max_range: int


class RaplMeter:
    """Package energy from Linux RAPL (``/sys/class/powercap/intel-rapl:N``), when readable.

    Reading ``energy_uj`` needs root on most kernels since 2020; where it cannot be read,
    ``available`` is False and the profile says power is unknown.
    """

    def __init__(self, root: Path = RAPL_ROOT) -> None:
        self.zones: list[_Zone] = []
        for zone in sorted(root.glob("intel-rapl:*")):
            if zone.name.count(":") != 1:  # sub-zones (core, uncore, dram) are inside packages
                continue
            energy = zone / "energy_uj"
            try:
                int(energy.read_text())
                max_range = int((zone / "max_energy_range_uj").read_text())
            except (OSError, ValueError):
                continue
            self.zones.append(_Zone(energy, max_range))
        self._start: list[int] = []
        self._t0 = 0.0

    @property
    def available(self) -> bool:
        return bool(self.zones)

    def _read(self) -> list[int]:
        return [int(z.energy.read_text()) for z in self.zones]

    def start(self) -> None:
        if self.available:
            self._start = self._read()
            self._t0 = time.perf_counter()

    def stop(self) -> tuple[float, float] | None:
        """(joules, seconds) since :meth:`start`, counter wrap handled; None if unreadable."""
        if not self.available or not self._start:
            return None
        try:
            end = self._read()
        except (OSError, ValueError):
            return None
        seconds = time.perf_counter() - self._t0
        uj = 0
        for zone, a, b in zip(self.zones, self._start, end, strict=True):
            uj += b - a if b >= a else b + zone.max_range - a
        return uj / 1e6, seconds
