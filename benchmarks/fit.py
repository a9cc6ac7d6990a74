"""Planner benchmark: ``edgeloop fit``'s choice against the best single preset that fits.

For each seed (3 by default) the zoo's ``mbconv`` (MobileNetV2-style inverted residuals, width
1.0, depth 2) is trained on ``textures`` at low resolution (16 pixels, difficulty 0, 1600
images, batches of 16: fp32 lands between chance and 100 % in a few seconds of training) and
exported; the trained teachers are cached in ``--workdir``. Three budgets are set from that model's
own figures on the target (``rpi4`` by default: latency and peak memory are the cost model's
predictions, size is the file's, accuracy is measured on held-out data):

- ``loose``:  latency <= 1.0 x fp32, size <= 0.5 x fp32, accuracy >= fp32 - 0.03
- ``medium``: latency <= 0.6 x fp32, size <= 0.3 x fp32, accuracy >= fp32 - 0.05
- ``tight``:  latency <= 0.35 x fp32, size <= 0.15 x fp32, accuracy >= fp32 - 0.10

Every single preset (``int8-dynamic``, ``int8``, ``fp16``, ``int4``, ``prune50-int8``,
``qat-int8``) is run once per seed and measured the same way; per budget, the best preset that
fits is the most accurate one whose figures hold the whole budget. ``edgeloop.plan.fit_model``
then plans for the same budget; reported: its choice and figures, the best preset's, and how
many candidates the cost model spared (screened before any training or quantization).

    python benchmarks/fit.py --jobs 3        # 3 seeds side by side; see docs/fit.md for the runtime
    python benchmarks/fit.py --quick         # smoke run: tiny data, 1 epoch, 1 seed

Prints a table and writes ``benchmarks/results/fit.json`` (with ``cpu_seconds``, the CPU time
of the run and its worker processes, and each seed's ``seconds`` and ``cpu_seconds``, for a
figure taken under load); ``BENCH_LOAD_BEFORE`` (e.g.
``uptime`` before the run) is recorded, with the load after.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results" / "fit.json"
WORKDIR = Path(__file__).parent / "results" / "fit-work"
TEACHER = ("mbconv", {"width": 1.0, "depth": 2})
PRESETS = ("int8-dynamic", "int8", "fp16", "int4", "prune50-int8", "qat-int8")
BUDGETS = {  # (latency factor, size factor, accuracy drop) against the fp32 model
    "loose": (1.0, 0.5, 0.03),
    "medium": (0.6, 0.3, 0.05),
    "tight": (0.35, 0.15, 0.10),
}


def _figures(path: Path, test: Any, profile: Any) -> dict[str, Any]:
    """Accuracy on the test split, latency and peak memory from the cost model, file size."""
    from edgeloop.runtime import evaluate
    from edgeloop.search import predict_cost

    cost = predict_cost(path, profile)
    return {
        "accuracy": evaluate(path, test.inputs, test.y, threads=1)["accuracy"],
        "latency_ms": cost.latency_ms,
        "peak_memory_bytes": cost.peak_memory_bytes,
        "size_bytes": path.stat().st_size,
    }


def run_seed(seed: int, args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from edgeloop.errors import BudgetError, EdgeloopError
    from edgeloop.optimize import optimize
    from edgeloop.plan import FitBudget, fit_model
    from edgeloop.search import resolve_target
    from edgeloop.zoo import export_onnx, train

    torch.set_num_threads(max(1, args.threads))
    wall0, cpu0 = time.perf_counter(), time.process_time()
    profile = resolve_target(args.target)
    opts = _opts(args)
    work = Path(tempfile.mkdtemp(prefix=f"edgeloop-bench-fit-{seed}-"))
    arch, extra = TEACHER
    tag = "-".join(f"{k}{v}" for k, v in sorted({**opts, **extra}.items()))
    ckpt = args.workdir / f"teacher-{arch}-{tag}-b{args.batch_size}-e{args.epochs}-s{seed}.pt"
    cached = ckpt.exists()
    if not cached:  # train() writes the checkpoint atomically
        args.workdir.mkdir(parents=True, exist_ok=True)
        train(arch, "textures", args.epochs, seed=seed, out=ckpt, dataset_options=opts,
              batch_size=args.batch_size, threads=max(1, args.threads), **extra)  # fmt: skip
    export_onnx(ckpt, work / "fp32.onnx", check_parity=False)
    from edgeloop.data import load_dataset

    # presets fine-tune and calibrate on the train split; every model is scored on the test one
    data = load_dataset("textures", "train", seed=seed, **opts)
    test = load_dataset("textures", "test", seed=seed, **opts)
    fp32 = _figures(work / "fp32.onnx", test, profile)
    presets: dict[str, Any] = {}
    for name in PRESETS:
        t0 = time.perf_counter()
        try:
            optimize(ckpt, name, data, out_dir=work / name, eval_samples=args.eval_samples)
        except EdgeloopError as e:
            presets[name] = {"error": str(e)}
            continue
        fig = _figures(work / name / "model.onnx", test, profile)
        presets[name] = {**fig, "seconds": time.perf_counter() - t0}
    budgets: dict[str, Any] = {}
    for bname, (lat_f, size_f, drop) in BUDGETS.items():
        budget = FitBudget(
            max_latency_ms=fp32["latency_ms"] * lat_f,
            max_size_kb=fp32["size_bytes"] * size_f / 1024,
            min_accuracy=max(0.0, fp32["accuracy"] - drop),
        )
        fits = {n: p for n, p in presets.items() if "error" not in p and not budget.misses(p)}
        best = max(fits, key=lambda n: fits[n]["accuracy"] or 0.0, default=None)
        row: dict[str, Any] = {
            "budget": budget.to_dict(),
            "best_preset": best,
            "best_preset_figures": fits.get(best) if best else None,
        }
        t0 = time.perf_counter()
        try:
            plan = fit_model(ckpt, target=profile, budget=budget, out_dir=work / f"fit-{bname}",
                             search_trials=args.search_trials, eval_samples=args.eval_samples,
                             seed=seed)  # fmt: skip
            assert plan.chosen is not None
            row.update(
                planner=plan.chosen.name,
                planner_figures=plan.chosen.measured,
                spared=plan.spared,
                candidates=[c.to_dict() for c in plan.candidates],
            )
        except BudgetError as e:
            saved = json.loads((work / f"fit-{bname}" / "plan.json").read_text())
            row.update(planner=None, planner_error=str(e), spared=saved["spared_by_cost_model"],
                       candidates=saved["candidates"])  # fmt: skip
        row["planner_seconds"] = time.perf_counter() - t0
        budgets[bname] = row
    shutil.rmtree(work, ignore_errors=True)
    return {"seed": seed, "teacher_cached": cached, "fp32": fp32, "presets": presets,
            "budgets": budgets, "seconds": time.perf_counter() - wall0,
            "cpu_seconds": time.process_time() - cpu0}  # fmt: skip


def _opts(args: argparse.Namespace) -> dict[str, Any]:
    return {"n": args.n, "size": args.size, "difficulty": args.difficulty}


def _kb(size: Any) -> float | None:
    return None if size is None else float(size) / 1024


def _mean(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.fmean(vals) if vals else None


def _cpu_seconds() -> float:
    """CPU seconds of this process and its children (torch's threads, worker processes). On a
    loaded machine the wall time over-states what a quiet run takes; this over the cores the
    run keeps busy is the better guess."""
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--target", default="rpi4")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--n", type=int, default=1600, help="textures samples (train 70 %%)")
    ap.add_argument("--size", type=int, default=16, help="textures image size, pixels")
    ap.add_argument("--difficulty", type=float, default=0.0, help="textures difficulty, 0-1")
    ap.add_argument("--epochs", type=int, default=8, help="teacher training epochs")
    ap.add_argument("--batch-size", type=int, default=16, help="teacher training batch size")
    ap.add_argument("--search-trials", type=int, default=6, help="the distillation's search")
    ap.add_argument("--eval-samples", type=int, default=600)
    ap.add_argument("--threads", type=int, default=1, help="torch threads per seed")
    ap.add_argument("--jobs", type=int, default=3, help="seeds in parallel (3 keeps 2 cores busy)")
    ap.add_argument("--workdir", type=Path, default=WORKDIR, help="cached teachers")
    ap.add_argument("--quick", action="store_true", help="smoke run: n=320, 1 epoch, 1 seed")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    if args.quick:
        args.n, args.epochs, args.seeds, args.search_trials = 320, 1, args.seeds[:1], 2
        args.eval_samples = 96
    start = time.perf_counter()
    if args.jobs > 1:
        with ProcessPoolExecutor(max_workers=args.jobs) as pool:
            runs = list(pool.map(run_seed, args.seeds, [args] * len(args.seeds)))
    else:
        runs = [run_seed(s, args) for s in args.seeds]
    summary = []
    for bname in BUDGETS:
        rows = [r["budgets"][bname] for r in runs]
        plan = [r.get("planner_figures") or {} for r in rows]
        best = [r["best_preset_figures"] or {} for r in rows]
        summary.append(
            {
                "budget": bname,
                "planner_choices": [r["planner"] for r in rows],
                "planner_accuracy": _mean([p.get("accuracy") for p in plan]),
                "planner_latency_ms": _mean([p.get("latency_ms") for p in plan]),
                "planner_size_kb": _mean([_kb(p.get("size_bytes")) for p in plan]),
                "preset_choices": [r["best_preset"] for r in rows],
                "preset_accuracy": _mean([p.get("accuracy") for p in best]),
                "preset_latency_ms": _mean([p.get("latency_ms") for p in best]),
                "preset_size_kb": _mean([_kb(p.get("size_bytes")) for p in best]),
                "spared_mean": statistics.fmean(r["spared"] for r in rows),
            }
        )
    print(f"target {args.target}, seeds {args.seeds}; fp32 accuracy "
          f"{statistics.fmean(r['fp32']['accuracy'] for r in runs):.3f}")  # fmt: skip
    print(f"{'budget':<8} {'planner':<22} {'acc':>6} {'ms':>8} {'KB':>7}   {'best preset':<26} "
          f"{'acc':>6} {'ms':>8} {'KB':>7} {'spared':>6}")  # fmt: skip

    def f(v: float | None, spec: str) -> str:
        return "-" if v is None else format(v, spec)

    for s in summary:
        print(f"{s['budget']:<8} {','.join(str(c) for c in s['planner_choices']):<22} "
              f"{f(s['planner_accuracy'], '.3f'):>6} {f(s['planner_latency_ms'], '.3f'):>8} "
              f"{f(s['planner_size_kb'], '.1f'):>7}   "
              f"{','.join(str(c) for c in s['preset_choices']):<26} "
              f"{f(s['preset_accuracy'], '.3f'):>6} {f(s['preset_latency_ms'], '.3f'):>8} "
              f"{f(s['preset_size_kb'], '.1f'):>7} {s['spared_mean']:>6.1f}")  # fmt: skip
    out = {
        "target": args.target,
        "teacher": {
            "arch": TEACHER[0],
            **TEACHER[1],
            "epochs": args.epochs,
            "batch_size": args.batch_size,
        },
        "dataset": "textures",
        "dataset_options": _opts(args),
        "seeds": args.seeds,
        "budgets": {
            k: {"latency_factor": v[0], "size_factor": v[1], "accuracy_drop": v[2]}
            for k, v in BUDGETS.items()
        },  # fmt: skip
        "quick": args.quick,
        "runs": runs,
        "summary": summary,
        "wall_seconds": time.perf_counter() - start,
        "cpu_seconds": _cpu_seconds(),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "load_before": os.environ.get("BENCH_LOAD_BEFORE"),
        "load_after": os.getloadavg()[0],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = args.out.with_suffix(".tmp")
    tmp_out.write_text(json.dumps(out, indent=2, default=str) + "\n")
    tmp_out.replace(args.out)
    print(f"wrote {args.out} ({out['wall_seconds']:.0f} s, {out['cpu_seconds']:.0f} CPU s)")


if __name__ == "__main__":
    main()
