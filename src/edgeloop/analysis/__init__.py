"""Static analysis of ONNX graphs: parameters, MACs, operators, size, and the cost model that
prices them on a device profile (build layer: needs onnx)."""

from __future__ import annotations

from edgeloop.analysis._estimate import KERNEL_FAMILIES, CostEstimate, OpCost, estimate
from edgeloop.analysis._macs import MAC_OPS
from edgeloop.analysis._plan import ExecutionPlan, Step, activation_peak, execution_plan
from edgeloop.analysis._stats import GraphStats, graph_stats, load_model, onnx_dtype_name

__all__ = [
    "KERNEL_FAMILIES",
    "MAC_OPS",
    "CostEstimate",
    "ExecutionPlan",
    "GraphStats",
    "OpCost",
    "Step",
    "activation_peak",
    "estimate",
    "execution_plan",
    "graph_stats",
    "load_model",
    "onnx_dtype_name",
]
