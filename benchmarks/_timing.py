"""What the model benchmarks share: one-thread ONNX Runtime sessions and interleaved timing.

Imported by ``compress.py`` and ``optimize.py`` (run as scripts, so this folder is on
``sys.path``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np


def session(path: Path) -> Any:
    """An ONNX Runtime CPU session on one thread (edgeloop.runtime's, as a device builds it)."""
    from edgeloop.runtime import Session

    return Session(path, threads=1, providers=["CPUExecutionProvider"])


def latencies(
    models: dict[str, Path],
    feeds: dict[str, np.ndarray] | np.ndarray,
    rounds: int,
    runs: int,
    warmup: int = 10,
) -> dict[str, dict[str, float]]:
    """Median and minimum ms per run of each model, timed in interleaved rounds so background
    load hits them alike. ``feeds`` is input name -> array, or one array for the first input."""
    sessions = {k: session(p) for k, p in models.items()}
    inputs = {
        k: feeds if isinstance(feeds, dict) else {s.input_names[0]: feeds}
        for k, s in sessions.items()
    }
    times: dict[str, list[float]] = {k: [] for k in models}
    for k, s in sessions.items():
        for _ in range(warmup):
            s.run_unchecked(inputs[k])
    for _ in range(rounds):
        for k, s in sessions.items():
            for _ in range(runs):
                t0 = time.perf_counter()
                s.run_unchecked(inputs[k])
                times[k].append((time.perf_counter() - t0) * 1e3)
    return {
        k: {"p50_ms": float(np.median(v)), "min_ms": float(np.min(v))} for k, v in times.items()
    }
