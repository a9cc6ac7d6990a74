"""Measure this machine and describe targets (device layer: numpy, onnxruntime, psutil only)."""

from __future__ import annotations

from edgeloop.hardware._cost import BUILTIN_EFFICIENCY, estimate_latency_ms
from edgeloop.hardware._cpu import cpu_model, isa_features, parse_cpuinfo
from edgeloop.hardware._kernels import KERNEL_SPECS, KernelSpec, measure_kernels
from edgeloop.hardware._measure import RaplMeter, gemm_gops, memory_bandwidth_gbps
from edgeloop.hardware._profile import PROFILE_STEPS, profile_device
from edgeloop.hardware._targets import list_targets, load_target

__all__ = [
    "BUILTIN_EFFICIENCY",
    "KERNEL_SPECS",
    "PROFILE_STEPS",
    "KernelSpec",
    "RaplMeter",
    "cpu_model",
    "estimate_latency_ms",
    "gemm_gops",
    "isa_features",
    "list_targets",
    "load_target",
    "measure_kernels",
    "memory_bandwidth_gbps",
    "parse_cpuinfo",
    "profile_device",
]
