"""Run Evidently's default data-drift preset on windows given as raw arrays.

Runs in its own environment (evidently 0.7.x imports only with ``pandas<3``), called by
``benchmarks/monitor.py`` as ``/work/venvs/evidently/bin/python _evidently_runner.py JOBS.json
[--procs N] [--render]``. ``JOBS.json`` lists ``{"reference": REF.npz, "windows": IN.npz,
"out": OUT.json}``; ``REF.npz`` holds ``reference`` (n, d) and ``columns``, ``IN.npz`` holds
``windows`` (k, m, d). The answer per window is Evidently's own DriftedColumnsCount (count and
share of drifted columns, each column by Evidently's default test and threshold for its size
and type) and its time.

Speed: about four fifths of a ``DataDriftPreset`` run is drawing its plotly widgets (two
figures per column), which a drift verdict does not use. Unless ``--render`` is given, the
widget renderers of the preset and of its per-column ``ValueDrift`` are replaced by ones that
draw nothing; the tests, thresholds and results are Evidently's own and unchanged (checked:
identical DriftedColumnsCount and per-column ValueDrift values with and without). Windows run
in ``--procs`` processes (default 1).
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np
import pandas as pd
from evidently import Report
from evidently.presets import DataDriftPreset

_REFERENCE: dict[str, pd.DataFrame] = {}


def skip_widgets() -> bool:
    """Draw no widgets (the verdicts stay Evidently's); False when this version has other
    renderers than the ones patched (then everything renders, as by default)."""
    try:
        from evidently.metrics import column_statistics
    except ImportError:
        return False
    calc = getattr(column_statistics, "ValueDriftCalculation", None)
    if calc is None or not hasattr(calc, "_render") or not hasattr(DataDriftPreset, "render"):
        return False
    calc._render = lambda self, *a, **k: []
    DataDriftPreset.render = lambda self, context, child_widgets=None: []  # type: ignore[method-assign]
    return True


def _reference(path: str) -> pd.DataFrame:
    if path not in _REFERENCE:
        ref = np.load(path)
        _REFERENCE[path] = pd.DataFrame(ref["reference"], columns=[str(c) for c in ref["columns"]])
    return _REFERENCE[path]


def one(ref_path: str, window: np.ndarray, render: bool) -> dict[str, Any]:
    if not render:
        skip_widgets()
    reference = _reference(ref_path)
    current = pd.DataFrame(window, columns=reference.columns)
    t0 = time.perf_counter()
    snapshot = Report([DataDriftPreset()]).run(current, reference)
    seconds = time.perf_counter() - t0
    metrics = snapshot.dict()["metrics"]
    count = next(m for m in metrics if m["metric_name"].startswith("DriftedColumnsCount"))
    methods = sorted({m["config"].get("method", "") for m in metrics
                      if m["metric_name"].startswith("ValueDrift")})
    return {
        "count": count["value"]["count"],
        "share": count["value"]["share"],
        "dataset_drift": count["value"]["share"] >= count["config"]["drift_share"],
        "methods": methods,
        "seconds": seconds,
        "rendered": render,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("jobs")
    ap.add_argument("--procs", type=int, default=1)
    ap.add_argument("--render", action="store_true", help="draw the widgets too (slow)")
    args = ap.parse_args()
    if not args.render and not skip_widgets():
        print("evidently: unknown renderers in this version; rendering everything")
        args.render = True
    with open(args.jobs) as f:
        jobs = json.load(f)
    work = [(j, i, w) for j in jobs for i, w in enumerate(np.load(j["windows"])["windows"])]
    with ProcessPoolExecutor(max(1, args.procs)) as pool:
        futures = [pool.submit(one, j["reference"], w, args.render) for j, _i, w in work]
        results = [f.result() for f in futures]
    for job in jobs:
        out = [r for (j, _i, _w), r in zip(work, results, strict=True) if j is job]
        with open(job["out"], "w") as f:
            json.dump(out, f)


if __name__ == "__main__":
    main()
