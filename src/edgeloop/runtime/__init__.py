"""Run ONNX models on ONNX Runtime: sessions, benchmarks, evaluation (device layer: no torch)."""

from __future__ import annotations

from edgeloop.runtime import metrics
from edgeloop.runtime._bench import BenchResult, GraphCounter, GraphFigures, benchmark
from edgeloop.runtime._card import card_path, describe_model
from edgeloop.runtime._evaluate import TASKS, evaluate, run_batched, score
from edgeloop.runtime._feeds import parse_shape_overrides, synthesize_inputs, validate_feeds
from edgeloop.runtime._offline import save_optimized
from edgeloop.runtime._parity import check_parity
from edgeloop.runtime._providers import PREFERENCE, resolve_providers
from edgeloop.runtime._session import GRAPH_OPTIMIZATION, Session

__all__ = [
    "GRAPH_OPTIMIZATION",
    "PREFERENCE",
    "TASKS",
    "BenchResult",
    "GraphCounter",
    "GraphFigures",
    "Session",
    "benchmark",
    "card_path",
    "check_parity",
    "describe_model",
    "evaluate",
    "metrics",
    "parse_shape_overrides",
    "resolve_providers",
    "run_batched",
    "save_optimized",
    "score",
    "synthesize_inputs",
    "validate_feeds",
]
