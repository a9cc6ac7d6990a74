"""Run Evidently's default data-drift preset on windows given as raw arrays.

Runs in its own environment (evidently 0.7.x imports only with ``pandas<3``), called by
``benchmarks/monitor.py`` as ``/work/venvs/evidently/bin/python _evidently_runner.py JOBS.json``.
``JOBS.json`` lists ``{"reference": REF.npz, "windows": IN.npz, "out": OUT.json}``; ``REF.npz``
holds ``reference`` (n, d) and ``columns``, ``IN.npz`` holds ``windows`` (k, m, d). The answer
per window is Evidently's own DriftedColumnsCount (count and share of drifted columns,
each column by Evidently's default test and threshold for its size and type) and its time.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
import pandas as pd
from evidently import Report
from evidently.presets import DataDriftPreset


def run(ref_path: str, src: str, dst: str) -> None:
    ref = np.load(ref_path)
    columns = [str(c) for c in ref["columns"]]
    reference = pd.DataFrame(ref["reference"], columns=columns)
    out = []
    for window in np.load(src)["windows"]:
        current = pd.DataFrame(window, columns=columns)
        t0 = time.perf_counter()
        snapshot = Report([DataDriftPreset()]).run(current, reference)
        seconds = time.perf_counter() - t0
        metrics = snapshot.dict()["metrics"]
        count = next(m for m in metrics if m["metric_name"].startswith("DriftedColumnsCount"))
        methods = sorted({m["config"].get("method", "") for m in metrics
                          if m["metric_name"].startswith("ValueDrift")})
        out.append({
            "count": count["value"]["count"],
            "share": count["value"]["share"],
            "dataset_drift": count["value"]["share"] >= count["config"]["drift_share"],
            "methods": methods,
            "seconds": seconds,
        })
    with open(dst, "w") as f:
        json.dump(out, f)


def main(jobs_path: str) -> None:
    with open(jobs_path) as f:
        jobs = json.load(f)
    for job in jobs:
        run(job["reference"], job["windows"], job["out"])


if __name__ == "__main__":
    main(sys.argv[1])
