"""Quantize ONNX models with NNCF's post-training ``nncf.quantize`` (its defaults).

Runs in its own environment (NNCF pins its own numpy/scipy and is not an edgeloop
dependency), called by ``benchmarks/optimize.py`` as
``/work/venvs/nncf/bin/python _nncf_runner.py JOBS.json``; that venv needs only
``pip install nncf==3.4.0 onnx==1.23.2 onnxruntime==1.32.0``. ``JOBS.json`` lists
``{"model": IN.onnx, "calib": CALIB.npz, "out": OUT.onnx, "transformer": bool,
"subset": N}``. ``CALIB.npz`` holds one array per model input (first axis: samples); NNCF
gets them one sample at a time, as its examples feed it. ``transformer`` passes
``model_type=nncf.ModelType.TRANSFORMER`` (NNCF's mode for transformers: SmoothQuant, some
ops kept float); otherwise every argument is NNCF's default. Each job writes its model and
``OUT.onnx.json`` with the seconds ``nncf.quantize`` took (or the error it raised).
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
import onnx


def run(job: dict[str, object]) -> dict[str, object]:
    import nncf

    model = onnx.load(str(job["model"]))
    arrays = dict(np.load(str(job["calib"])))
    n = len(next(iter(arrays.values())))
    items = [{k: v[i : i + 1] for k, v in arrays.items()} for i in range(n)]
    kwargs: dict[str, object] = {"subset_size": int(str(job.get("subset", 300)))}
    if job.get("transformer"):
        kwargs["model_type"] = nncf.ModelType.TRANSFORMER
    t0 = time.perf_counter()
    try:
        q = nncf.quantize(model, nncf.Dataset(items), **kwargs)
    except Exception as e:  # report it in the table rather than lose the other peers
        return {"error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}
    seconds = time.perf_counter() - t0
    onnx.save(q, str(job["out"]))
    return {"seconds": seconds, "nncf": nncf.__version__}


def main(jobs_path: str) -> None:
    with open(jobs_path) as f:
        jobs = json.load(f)
    for job in jobs:
        result = run(job)
        with open(str(job["out"]) + ".json", "w") as f:
            json.dump(result, f)


if __name__ == "__main__":
    main(sys.argv[1])
