"""``profile_device``: measure this machine into a :class:`DeviceProfile`."""

from __future__ import annotations

import platform
import sys
from collections.abc import Callable
from datetime import datetime, timezone

from edgeloop.artifacts import DeviceProfile
from edgeloop.hardware._cpu import core_counts, cpu_model, isa_features
from edgeloop.hardware._kernels import measure_kernels
from edgeloop.hardware._measure import RaplMeter, gemm_gops, memory_bandwidth_gbps

__all__ = ["PROFILE_STEPS", "profile_device"]


PROFILE_STEPS = ("fp32 GEMM", "int8 GEMM", "memory bandwidth", "kernels")


def profile_device(
    quick: bool = False,
    *,
    threads: int | None = None,
    on_step: Callable[[str], None] | None = None,
) -> DeviceProfile:
    """Measure this machine: CPU, ISA, memory, fp32/int8 GEMM throughput, bandwidth, power,
    and the kernel figures the cost model reads (``DeviceProfile.kernels``, see
    :func:`edgeloop.hardware.measure_kernels`).

    Throughput comes from ONNX Runtime's own GEMM kernels (MatMul for fp32, MatMulInteger for
    int8) on ``threads`` threads (default: every physical core), so it is what ONNX models can
    reach here, not a theoretical peak. ``quick`` uses smaller problems and shorter runs (a few
    seconds in all instead of about half a minute: most of it is loading the cost model's
    kernels). Power is the average RAPL package power
    over the kernels when ``/sys/class/powercap`` is readable, else unknown. ``on_step`` is
    called with the name of each measurement (``PROFILE_STEPS``) as it starts, for progress bars.
    """
    import numpy as np
    import onnxruntime as ort
    import psutil

    physical, logical = core_counts()
    n_threads = threads or physical or 1
    size, seconds = (256, 0.1) if quick else (512, 0.5)
    mib = 64  # larger than the last-level cache of the machines edgeloop targets
    step = on_step or (lambda name: None)
    meter = RaplMeter()
    meter.start()
    step(PROFILE_STEPS[0])
    fp32 = gemm_gops("fp32", size=size, threads=n_threads, seconds=seconds)
    step(PROFILE_STEPS[1])
    int8 = gemm_gops("int8", size=size, threads=n_threads, seconds=seconds)
    energy = meter.stop()
    step(PROFILE_STEPS[2])
    bandwidth = memory_bandwidth_gbps(mib=mib, seconds=seconds)
    step(PROFILE_STEPS[3])
    kernels = measure_kernels(threads=n_threads, seconds=0.02 if quick else 0.1)
    mem = psutil.virtual_memory()
    power_w = energy[0] / energy[1] if energy and energy[1] > 0 else None
    return DeviceProfile(
        name=platform.node() or "this-machine",
        source="measured",
        arch=platform.machine(),
        cpu_model=cpu_model(),
        cores_physical=physical,
        cores_logical=logical,
        isa=isa_features(),
        memory_total_mb=round(mem.total / 2**20, 1),
        memory_available_mb=round(mem.available / 2**20, 1),
        fp32_gops=round(fp32, 2),
        int8_gops=round(int8, 2),
        mem_bandwidth_gbps=round(bandwidth, 2),
        power_w=None if power_w is None else round(power_w, 2),
        power_source="rapl" if power_w is not None else "unknown",
        os=f"{platform.system()} {platform.release()}",
        runtime={
            "onnxruntime": ort.__version__,
            "numpy": np.__version__,
            "python": sys.version.split()[0],
        },
        providers=tuple(ort.get_available_providers()),
        kernels=kernels,
        notes=(
            f"measured {'quickly ' if quick else ''}with {n_threads} thread(s): GOPS = 2*M*N*K / "
            f"best run time of ONNX Runtime MatMul (fp32) and MatMulInteger (u8 x s8) at "
            f"{size}x{size}x{size}; bandwidth = bytes read + written by a {mib} MiB numpy copy, "
            f"best run; kernels (the cost model's) = GOPS of fp32/int8 GEMM, conv, 1x1 conv "
            f"and depthwise conv at a few sizes, per-operator and Run() overheads; "
            f"power = RAPL package energy over the GEMM runs"
            + ("" if power_w is not None else " (not readable here: unknown)")
        ),
        extra={
            "measured_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "kernel_threads": n_threads,
            "quick": quick,
        },
    )
