"""Hardware-aware architecture search (build layer: torch, onnx, optuna).

``search(space, target=..., dataset=..., trials=..., out_dir=...)`` explores a
:class:`SearchSpace` (``mobilenet``: width, depth, kernel, expansion, resolution;
``transformer``: layers, heads, hidden size) with Optuna: accuracy from short training, latency,
peak memory and size from the cost model (or measured), the budget as trial constraints. It
writes the Pareto front (``front.json``, ``front.png``) and the chosen model as a zoo
checkpoint. Workers share a study through a journal file or a PostgreSQL URL.
"""

from __future__ import annotations

from edgeloop.search._cost import Cost, measure_latency_ms, predict_cost
from edgeloop.search._plot import plot_front
from edgeloop.search._search import (
    STRATEGY,
    Limits,
    SearchResult,
    TrialRecord,
    pareto_front,
    rank_correlation,
    resolve_target,
    search,
)
from edgeloop.search._space import SPACES, SearchSpace, list_spaces, load_space

__all__ = [
    "SPACES",
    "STRATEGY",
    "Cost",
    "Limits",
    "SearchResult",
    "SearchSpace",
    "TrialRecord",
    "list_spaces",
    "load_space",
    "measure_latency_ms",
    "pareto_front",
    "plot_front",
    "predict_cost",
    "rank_correlation",
    "resolve_target",
    "search",
]
