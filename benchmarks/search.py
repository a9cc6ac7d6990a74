"""Search benchmark: the architecture search's front against the zoo's hand-made models.

On two targets with different budgets (``local``: this machine, latencies timed with ONNX
Runtime, ``--measure``; ``rpi4``: the built-in Raspberry Pi 4 class profile, latencies are the
cost model's predictions since no such board is here), ``edgeloop.search`` runs ``--trials``
trials of the ``mobilenet`` space on ``textures`` at low resolution (``--size`` 16 pixels,
``--difficulty`` 0, ``--n`` 1600 images, batches of ``--batch-size`` 16 so that a short trial
still takes enough optimizer steps). Multi-fidelity: every trained candidate gets
``--short-epochs`` (2) first; those below the median of the earlier short accuracies stop
there, the rest train on to ``--epochs`` (5). Then, for each hand-made zoo model (MobileNetV1
at widths 0.25 and 0.5, the CNN at widths 16 and 32), the most accurate front architecture
whose latency on that target is at most the zoo model's is retrained next to it with
``--seeds`` (3) seeds, the same epochs, batch size and data, and both test accuracies are
quoted (mean and standard deviation).

Also measured: the wall time of each search (its ``--trials`` trials), and how well short
training ranks architectures: ``--rank-sample`` (6) architectures drawn from the space, each
trained ``--short-epochs`` and ``--rank-epochs`` (10) epochs, Spearman's rank correlation of the
two validation accuracies.

    python benchmarks/search.py --jobs 2        # 40 trials per target; about 8 min on 2 cores
    python benchmarks/search.py --quick         # smoke run: tiny data, 4 trials, 1 seed

``--jobs`` worker processes (one torch thread each) run the two searches side by side, then the
retraining and the rank check. A zoo model's (and a front architecture's) accuracy does not
depend on the target, so each (architecture, seed) is trained once and reused by both targets'
comparisons; these trainings and the rank check's are cached in ``--workdir`` (keyed by every
setting), so a rerun only repeats the searches. While ``--jobs 2`` runs the rpi4 search next to
the local one, the local latencies are timed with the other core busy.

Prints tables and writes ``benchmarks/results/search.json`` (every trial, the fronts, the
comparisons, the rank check, wall and CPU times per phase: ``search_seconds`` and
``search_cpu_seconds`` per target, ``comparison_seconds`` and ``comparison_cpu_seconds``, the
rank check's ``seconds`` and ``cpu_seconds``; ``cpu_seconds``, the CPU time of every process of
the run, for a figure taken under load: over 2 cores it estimates a quiet run's wall time);
``BENCH_LOAD_BEFORE`` (e.g. ``uptime`` before the run) is recorded, with the load after, so a
figure taken under load says so.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import tempfile
import time
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results" / "search.json"
WORKDIR = Path(__file__).parent / "results" / "search-work"
ZOO = (("mobilenet", {"width": 0.25}), ("mobilenet", {"width": 0.5}),
       ("cnn", {"width": 16}), ("cnn", {"width": 32}))  # fmt: skip
# chosen so that each binds on some of the space at 16 pixels (the zoo models span 0.3-2 ms on
# rpi4): the local budget caps the model size (peak memory there is mostly the runtime),
# the rpi4 budget latency
BUDGETS = {"local": {"max_size_kb": 120.0}, "rpi4": {"max_latency_ms": 1.5}}


def _cpu() -> float:
    """CPU seconds of this process so far (all its threads)."""
    return time.process_time()


def _cost(arch: str, kwargs: dict[str, Any], target: Any, measure: bool, work: Path) -> float:
    """The latency of an untrained ``arch`` on ``target`` (timed here when ``measure``)."""
    import torch

    from edgeloop.search import measure_latency_ms, predict_cost
    from edgeloop.zoo import build_model, torch_to_onnx

    model = build_model(arch, **kwargs).eval()
    size = int(kwargs.get("input_size", 32))
    key = hashlib.sha256(json.dumps([arch, kwargs], sort_keys=True).encode()).hexdigest()[:16]
    path = work / f"{arch}-{key}.onnx"
    x = torch.zeros(1, int(kwargs.get("in_channels", 3)), size, size)
    torch_to_onnx(model, (x,), path, input_names=["input"], output_names=["output"])
    if measure:
        return measure_latency_ms(path, threads=1)
    return predict_cost(path, target).latency_ms


def search_target(target_name: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """One target's search and the zoo models' latencies there (in one worker process)."""
    import torch

    from edgeloop.data import load_dataset
    from edgeloop.search import Limits, resolve_target, search
    from edgeloop.zoo import kwargs_for

    torch.set_num_threads(cfg["threads"])
    cpu0 = _cpu()
    profile = resolve_target(target_name)
    measure = target_name == "local"
    limits = Limits(**BUDGETS[target_name])
    opts = cfg["opts"]
    with tempfile.TemporaryDirectory(prefix=f"edgeloop-bench-search-{target_name}-") as tmp:
        work = Path(tmp)
        start = time.perf_counter()
        res = search(
            "mobilenet", out_dir=work / "out", target=profile, dataset="textures",
            trials=cfg["trials"], epochs=cfg["epochs"], short_epochs=cfg["short_epochs"],
            batch_size=cfg["batch_size"], limits=limits, measure=measure,
            dataset_options=opts, seed=0, threads=cfg["threads"],
        )  # fmt: skip
        wall = time.perf_counter() - start
        ds = load_dataset("textures", "train", **opts)
        zoo_ms = {
            f"{a} {x}": _cost(a, {**kwargs_for(a, ds), **x}, profile, measure, work) for a, x in ZOO
        }
    return {
        "target": profile.name,
        "latency": "measured here (ONNX Runtime, 1 thread)" if measure else "cost model",
        "limits": limits.to_dict(),
        "search_seconds": wall,
        "search_cpu_seconds": _cpu() - cpu0,
        "trials": [t.to_dict() for t in res.trials],
        "front": [t.number for t in res.front],
        "states": {s: sum(t.state == s for t in res.trials) for s in {t.state for t in res.trials}},
        "zoo_latency_ms": zoo_ms,
    }


def train_one(job: dict[str, Any], cfg: dict[str, Any]) -> dict[str, Any]:
    """Test accuracy (``split`` test) or validation accuracy (``val``) of one training, cached in
    the workdir under a key of every setting."""
    import torch

    from edgeloop.data import load_dataset
    from edgeloop.zoo import arch_info, build_model, evaluate_model, fit, kwargs_for

    key = json.dumps([job, cfg["opts"], cfg["batch_size"]], sort_keys=True, default=str)
    digest = hashlib.sha256(key.encode()).hexdigest()[:20]
    cache = Path(cfg["workdir"]) / f"train-{digest}.json"
    if cache.exists():
        cached: dict[str, Any] = json.loads(cache.read_text())
        return {**cached, "cached": True, "cpu_seconds": 0.0}
    torch.set_num_threads(cfg["threads"])
    cpu0 = _cpu()
    opts = cfg["opts"]
    tr = load_dataset("textures", "train", seed=0, **opts)
    va = load_dataset("textures", "val", seed=0, **opts)
    arch = job["arch"]
    kw = job["kwargs"] if job.get("full_kwargs") else {**kwargs_for(arch, tr), **job["kwargs"]}
    torch.manual_seed(job["seed"])
    model = build_model(arch, **kw)
    fit(model, tr, va, epochs=job["epochs"], lr=arch_info(arch).lr,
        batch_size=cfg["batch_size"], seed=job["seed"])  # fmt: skip
    data = va if job["split"] == "val" else load_dataset("textures", "test", seed=0, **opts)
    out = {"job": job, "accuracy": float(evaluate_model(model, data)["accuracy"])}
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp")
    tmp.write_text(json.dumps(out) + "\n")
    tmp.replace(cache)
    return {**out, "cached": False, "cpu_seconds": _cpu() - cpu0}


def _stats(values: list[float]) -> dict[str, float]:
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
    }


def _rank_jobs(args: argparse.Namespace) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(params, job) for the rank check: ``--rank-sample`` points, short and long training."""
    import random

    from edgeloop.data import load_dataset
    from edgeloop.search import SPACES
    from edgeloop.zoo import kwargs_for

    space = SPACES["mobilenet"]
    rng = random.Random(0)
    base = kwargs_for("mbconv", load_dataset("textures", "train", seed=0, **_opts(args)))
    out = []
    for _ in range(args.rank_sample):
        params = {k: rng.choice(v) for k, v in space.choices.items()}
        kw = space.arch_kwargs(params, base)
        for epochs in (args.short_epochs, args.rank_epochs):
            job = {"arch": "mbconv", "kwargs": kw, "full_kwargs": True, "seed": 0,
                   "epochs": epochs, "split": "val"}  # fmt: skip
            out.append((params, job))
    return out


def _opts(args: argparse.Namespace) -> dict[str, Any]:
    return {"n": args.n, "size": args.size, "difficulty": args.difficulty}


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--targets", nargs="+", default=["local", "rpi4"], choices=sorted(BUDGETS))
    ap.add_argument("--trials", type=int, default=40)
    ap.add_argument("--epochs", type=int, default=5, help="epochs of a full trial")
    ap.add_argument("--short-epochs", type=int, default=2, help="epochs before the stop check")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--n", type=int, default=1600, help="textures samples (train 70 %%)")
    ap.add_argument("--size", type=int, default=16, help="textures image size, pixels")
    ap.add_argument("--difficulty", type=float, default=0.0, help="textures difficulty, 0-1")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--rank-sample", type=int, default=6)
    ap.add_argument("--rank-epochs", type=int, default=10)
    ap.add_argument("--jobs", type=int, default=2, help="worker processes")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per worker")
    ap.add_argument("--workdir", type=Path, default=WORKDIR, help="cached trainings")
    ap.add_argument("--quick", action="store_true", help="smoke run: n=320, 4 trials, 1 seed")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    if args.quick:
        args.n, args.trials, args.epochs, args.short_epochs = 320, 4, 2, 1
        args.seeds, args.rank_sample, args.rank_epochs = args.seeds[:1], 3, 2
    for name in ("trials", "epochs", "short_epochs", "batch_size", "n", "jobs", "threads",
                 "rank_sample", "rank_epochs"):  # fmt: skip
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.short_epochs > args.epochs:
        ap.error(f"--short-epochs ({args.short_epochs}) must not exceed --epochs ({args.epochs})")
    cfg = {
        "opts": _opts(args), "trials": args.trials, "epochs": args.epochs,
        "short_epochs": args.short_epochs, "batch_size": args.batch_size,
        "threads": args.threads, "workdir": str(args.workdir),
    }  # fmt: skip
    start = time.perf_counter()
    cpu0 = _cpu()
    trainings: list[dict[str, Any]] = []
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        # the searches first, the rank check's trainings behind them to keep every worker busy
        searches = {t: pool.submit(search_target, t, cfg) for t in args.targets}
        rank_start = time.perf_counter()
        rank_jobs = _rank_jobs(args)
        rank_futs = [pool.submit(train_one, job, cfg) for _, job in rank_jobs]
        targets = {t: f.result() for t, f in searches.items()}
        search_done = time.perf_counter()
        # each zoo model against the best front model no slower than it, per target
        jobs: dict[str, dict[str, Any]] = {}
        plans: dict[str, list[dict[str, Any]]] = {}
        for tname, t in targets.items():
            by_number = {tr["number"]: tr for tr in t["trials"]}
            front = [by_number[n] for n in t["front"]]
            plans[tname] = []
            for arch, extra in ZOO:
                zoo = f"{arch} {extra}"
                zoo_ms = t["zoo_latency_ms"][zoo]
                fitting = [f for f in front if f["cost"]["latency_ms"] <= zoo_ms]
                row: dict[str, Any] = {"zoo": zoo, "zoo_latency_ms": zoo_ms, "front": None}
                if fitting:
                    best = max(fitting, key=lambda f: f["accuracy"] or 0.0)
                    row["front"] = {"trial": best["number"], "params": best["params"],
                                    "latency_ms": best["cost"]["latency_ms"]}  # fmt: skip
                    for s in args.seeds:
                        for who, a, kw, full in (("front", "mbconv", best["arch_kwargs"], True),
                                                 ("zoo", arch, extra, False)):  # fmt: skip
                            job = {"arch": a, "kwargs": kw, "full_kwargs": full, "seed": s,
                                   "epochs": args.epochs, "split": "test"}  # fmt: skip
                            k = json.dumps(job, sort_keys=True)
                            jobs[k] = job
                            row.setdefault(f"{who}_keys", []).append(k)
                plans[tname].append(row)
        futs: dict[str, Future[dict[str, Any]]] = {
            k: pool.submit(train_one, j, cfg) for k, j in jobs.items()
        }
        acc = {}
        compare_cpu = 0.0
        for k, f in futs.items():
            r = f.result()
            trainings.append(r)
            acc[k] = r["accuracy"]
            compare_cpu += r["cpu_seconds"]
        compare_done = time.perf_counter()
        rank_runs = [f.result() for f in rank_futs]
        trainings.extend(rank_runs)
        rank_done = time.perf_counter()
    for tname, rows in plans.items():
        comparisons = []
        for row in rows:
            if row["front"] is not None:
                fa = [acc[k] for k in row.pop("front_keys")]
                za = [acc[k] for k in row.pop("zoo_keys")]
                row.update(front_accuracy=_stats(fa), zoo_accuracy=_stats(za), front_runs=fa,
                           zoo_runs=za,
                           same_or_better=statistics.fmean(fa) >= statistics.fmean(za))  # fmt: skip
            comparisons.append(row)
        targets[tname]["comparisons"] = comparisons
    from edgeloop.search import rank_correlation

    short = [r["accuracy"] for r in rank_runs[0::2]]
    long = [r["accuracy"] for r in rank_runs[1::2]]
    rho = rank_correlation(short, long) if len(short) >= 2 else float("nan")
    rank = {
        "architectures": [p for p, _ in rank_jobs[0::2]],
        "short_epochs": args.short_epochs,
        "long_epochs": args.rank_epochs,
        "short_accuracy": short,
        "long_accuracy": long,
        "spearman": rho,
        "seconds": rank_done - rank_start,
        "cpu_seconds": sum(r["cpu_seconds"] for r in rank_runs),
        "note": "trained side by side with the searches; seconds is the span to the last one",
    }
    for t in targets.values():
        print(f"\n{t['target']} ({t['latency']}), limits {t['limits']}: {len(t['trials'])} trials "
              f"in {t['search_seconds']:.0f} s, {t['states']}")  # fmt: skip
        print(f"{'zoo model':<28} {'zoo ms':>8} {'front ms':>9} {'zoo acc':>15} {'front acc':>15}")
        for c in t["comparisons"]:
            if c.get("front") is None:
                print(f"{c['zoo']:<28} {c['zoo_latency_ms']:>8.3f}  (no front model that fast)")
                continue
            za, fa = c["zoo_accuracy"], c["front_accuracy"]
            zoo_acc = f"{za['mean']:.3f} ± {za['std']:.3f}"
            front_acc = f"{fa['mean']:.3f} ± {fa['std']:.3f}"
            print(f"{c['zoo']:<28} {c['zoo_latency_ms']:>8.3f} {c['front']['latency_ms']:>9.3f} "
                  f"{zoo_acc:>15} {front_acc:>15}")  # fmt: skip
    print(f"\nrank check: {args.rank_sample} architectures, {args.short_epochs} vs "
          f"{args.rank_epochs} epochs, Spearman rho {rho:.3f}")  # fmt: skip
    cpu = (_cpu() - cpu0 + sum(t["search_cpu_seconds"] for t in targets.values())
           + sum(r["cpu_seconds"] for r in trainings))  # fmt: skip
    out = {
        "space": "mobilenet",
        "dataset": "textures",
        "dataset_options": cfg["opts"],
        "trials_per_target": args.trials,
        "epochs": args.epochs,
        "short_epochs": args.short_epochs,
        "batch_size": args.batch_size,
        "seeds": args.seeds,
        "jobs": args.jobs,
        "quick": args.quick,
        "targets": list(targets.values()),
        "rank_check": rank,
        "search_phase_seconds": search_done - start,
        "comparison_seconds": compare_done - search_done,
        "comparison_cpu_seconds": compare_cpu,
        "trainings": len(trainings),
        "trainings_cached": sum(bool(r["cached"]) for r in trainings),
        "wall_seconds": time.perf_counter() - start,
        "cpu_seconds": cpu,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "load_before": os.environ.get("BENCH_LOAD_BEFORE"),
        "load_after": os.getloadavg()[0],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = args.out.with_suffix(".tmp")
    tmp_out.write_text(json.dumps(out, indent=2, default=str) + "\n")
    tmp_out.replace(args.out)
    print(f"wrote {args.out} ({out['wall_seconds']:.0f} s, {cpu:.0f} CPU s)")


if __name__ == "__main__":
    main()
