"""Static analysis of ONNX graphs: parameters, MACs, operators, size (build layer: needs onnx)."""

from __future__ import annotations

from edgeloop.analysis._macs import MAC_OPS
from edgeloop.analysis._stats import GraphStats, graph_stats, load_model, onnx_dtype_name

__all__ = ["MAC_OPS", "GraphStats", "graph_stats", "load_model", "onnx_dtype_name"]
