"""Accuracy-aware mixed precision: keep the most sensitive nodes in float until a budget holds.

Given a way to build the quantized model with some nodes left in float (``build(exclude, out)``),
the search:

1. builds it with every candidate quantized; if the budget holds, it is done;
2. measures each candidate's sensitivity: the gain in mean SQNR (dB, against the fp32 outputs,
   on a subset of samples) when that one node alone stays float;
3. keeps the most sensitive nodes (those whose float copy raises SQNR) in float, one more at a
   time, checking the full budget after each, until it holds or ``max_float`` nodes are float.

It returns the best model found (the one that meets the budget, else the closest) with the nodes
kept in float and what each cost: its sensitivity gain and the weight bytes that stay float.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeloop.optimize._measure import Budget, Evaluator, Quality
from edgeloop.optimize._model import copy_model

__all__ = ["MixedResult", "search"]

Build = Callable[[list[str], Path], None]
Progress = Callable[[str, float], None]


@dataclass
class MixedResult:
    path: Path
    quality: Quality
    met: bool
    shortfall: dict[str, float]
    kept_float: list[dict[str, Any]] = field(default_factory=list)
    sensitivity: list[dict[str, Any]] = field(default_factory=list)
    tried: int = 0

    def details(self) -> dict[str, Any]:
        return {
            "budget_met": self.met,
            "shortfall": self.shortfall,
            "kept_float": self.kept_float,
            "sensitivity": self.sensitivity[:20],
            "candidates_tried": self.tried,
        }


def _miss_size(miss: dict[str, float]) -> float:
    # normalise: a metric point, a cosine of 0.01 and 10 dB SQNR weigh about the same
    return (
        miss.get("max_drop", 0) * 100
        + miss.get("min_cosine", 0) * 100
        + miss.get("min_sqnr", 0) / 10
    )


def search(
    candidates: list[tuple[str, int]],
    build: Build,
    evaluator: Evaluator,
    budget: Budget,
    base: Quality,
    workdir: Path,
    *,
    max_float: int | None = None,
    sensitivity_samples: int = 128,
    progress: Progress | None = None,
) -> MixedResult:
    """``candidates`` are (node name, weight bytes) pairs; see the module docstring."""
    workdir.mkdir(parents=True, exist_ok=True)

    def note(msg: str, frac: float) -> None:
        if progress is not None:
            progress(msg, frac)

    full = workdir / "mixed_all.onnx"
    build([], full)
    q = evaluator.score(full, latency=False)
    miss = budget.shortfall(q, base)
    if not miss or not candidates:
        return MixedResult(full, q, not miss, miss)

    weight = dict(candidates)
    ref = evaluator.score(full, latency=False, limit=sensitivity_samples)
    sens: list[dict[str, Any]] = []
    probe = workdir / "mixed_probe.onnx"
    for i, (name, _) in enumerate(candidates):
        note(f"sensitivity {name}", i / max(1, len(candidates)))
        build([name], probe)
        qi = evaluator.score(probe, latency=False, limit=sensitivity_samples)
        gain = (qi.sqnr_mean_db or 0.0) - (ref.sqnr_mean_db or 0.0)
        sens.append({"node": name, "sqnr_gain_db": round(gain, 3), "weight_bytes": weight[name]})
    sens.sort(key=lambda s: -float(s["sqnr_gain_db"]))

    # a node whose float copy does not raise SQNR on its own is not worth its bytes
    useful = [s for s in sens if float(s["sqnr_gain_db"]) > 0] or sens[:1]
    limit = len(useful) if max_float is None else max(1, min(max_float, len(useful)))
    best_path = workdir / "mixed_best.onnx"
    copy_model(full, best_path)
    best = MixedResult(best_path, q, False, miss, [], sens, len(candidates))
    kept: list[dict[str, Any]] = []
    prev = q
    for k in range(1, limit + 1):
        note(f"keeping {k} node(s) float", k / limit)
        cand = workdir / "mixed_try.onnx"
        build([str(s["node"]) for s in useful[:k]], cand)
        qk = evaluator.score(cand, latency=False)
        mk = budget.shortfall(qk, base)
        s = useful[k - 1]
        kept.append(
            {
                "node": s["node"],
                "weight_bytes_float": s["weight_bytes"],
                "sqnr_gain_db": s["sqnr_gain_db"],
                "cosine_min_after": round(qk.cosine_min or 0.0, 6),
                "metric_after": qk.metric,
                "metric_gain": None
                if qk.metric is None or prev.metric is None
                else round(qk.metric - prev.metric, 6),
            }
        )
        prev = qk
        if not mk or _miss_size(mk) < _miss_size(best.shortfall):
            copy_model(cand, best_path)
            best = MixedResult(best_path, qk, not mk, mk, list(kept), sens, len(candidates) + k)
        if not mk:
            break
    best.tried = len(candidates) + len(kept)
    return best
