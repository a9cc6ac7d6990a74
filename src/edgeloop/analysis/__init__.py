"""Static analysis of ONNX graphs: parameters, MACs, operators, size, and the cost model that
prices them on a device profile (build layer: needs onnx)."""

from __future__ import annotations

from edgeloop.analysis._calibrate import CalibrationModel, calibrate, fit_latency
from edgeloop.analysis._estimate import (
    KERNEL_FAMILIES,
    LATENCY_FEATURES,
    CostEstimate,
    OpCost,
    estimate,
    latency_features,
)
from edgeloop.analysis._macs import MAC_OPS
from edgeloop.analysis._plan import ExecutionPlan, Step, activation_peak, execution_plan
from edgeloop.analysis._stats import GraphStats, graph_stats, load_model, onnx_dtype_name

__all__ = [
    "KERNEL_FAMILIES",
    "LATENCY_FEATURES",
    "MAC_OPS",
    "CalibrationModel",
    "CostEstimate",
    "ExecutionPlan",
    "GraphStats",
    "OpCost",
    "Step",
    "activation_peak",
    "calibrate",
    "estimate",
    "execution_plan",
    "fit_latency",
    "graph_stats",
    "latency_features",
    "load_model",
    "onnx_dtype_name",
]
