"""The planner (build layer): fit a model to a device budget with the cheapest pipeline.

``fit_model(model, target=..., budget=FitBudget(max_latency_ms=..., max_ram_mb=...,
max_size_kb=..., min_accuracy=...), out_dir=...)`` tries candidate pipelines in order of
expected cost, screens each with the cost model before anything is trained, stops at the first
that holds the budget, and explains every rejected candidate with its figures.
"""

from __future__ import annotations

from edgeloop.plan._plan import (
    PRUNE_RATIOS,
    Candidate,
    FitBudget,
    PlanResult,
    candidate_names,
    fit_model,
)
from edgeloop.plan._report import write_report

__all__ = [
    "PRUNE_RATIOS",
    "Candidate",
    "FitBudget",
    "PlanResult",
    "candidate_names",
    "fit_model",
    "write_report",
]
