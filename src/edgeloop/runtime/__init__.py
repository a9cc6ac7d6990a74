"""Run ONNX models on ONNX Runtime: sessions, benchmarks, evaluation (device layer: no torch)."""

from __future__ import annotations

from edgeloop.runtime import metrics
from edgeloop.runtime._bench import BenchResult, benchmark
from edgeloop.runtime._card import card_path, describe_model
from edgeloop.runtime._evaluate import TASKS, evaluate, run_batched
from edgeloop.runtime._feeds import parse_shape_overrides, synthesize_inputs, validate_feeds
from edgeloop.runtime._providers import PREFERENCE, resolve_providers
from edgeloop.runtime._session import Session

__all__ = [
    "PREFERENCE",
    "TASKS",
    "BenchResult",
    "Session",
    "benchmark",
    "card_path",
    "describe_model",
    "evaluate",
    "metrics",
    "parse_shape_overrides",
    "resolve_providers",
    "run_batched",
    "synthesize_inputs",
    "validate_feeds",
]
