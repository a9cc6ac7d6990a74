"""Search benchmark: the architecture search's front against the zoo's hand-made models.

On two targets with different budgets (``local``: this machine, latencies timed with ONNX
Runtime, ``--measure``; ``rpi4``: the built-in Raspberry Pi 4 class profile, latencies are the
cost model's predictions since no such board is here), ``edgeloop.search`` runs ``--trials``
trials of the ``mobilenet`` space on ``textures`` (multi-fidelity: 1 epoch, then ``--epochs``
for the trials above the median). Then, for each hand-made zoo model (MobileNetV1 at widths
0.25 and 0.5, the CNN at widths 16 and 32), the most accurate front architecture whose latency
on that target is at most the zoo model's is retrained next to it with ``--seeds`` (3) seeds,
the same epochs and data, and both test accuracies are quoted (mean and standard deviation).

Also measured: the wall time of the search on this machine (per target), and how well short
training ranks architectures: ``--rank-sample`` (6) architectures drawn from the space, each
trained 1 epoch and ``--rank-epochs`` (6) epochs, Spearman's rank correlation of the two
validation accuracies.

    python benchmarks/search.py                 # 40 trials per target; about 15 min on 8 cores
    python benchmarks/search.py --quick         # smoke run: tiny data, 4 trials, 1 seed

A zoo model's (and a front architecture's) accuracy does not depend on the target, so each
(architecture, seed) is trained once and reused by both targets' comparisons.

Prints tables and writes ``benchmarks/results/search.json`` (every trial, the fronts, the
comparisons, the rank check, wall times per phase: ``search_seconds`` and
``comparison_seconds`` per target, the rank check's ``seconds``; ``cpu_seconds``, the CPU time
of the run, for a figure taken under load); ``BENCH_LOAD_BEFORE`` (e.g. ``uptime`` before the
run) is recorded, with the load after, so a figure taken under load says so.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results" / "search.json"
ZOO = (("mobilenet", {"width": 0.25}), ("mobilenet", {"width": 0.5}),
       ("cnn", {"width": 16}), ("cnn", {"width": 32}))  # fmt: skip
BUDGETS = {"local": {"max_memory_mb": 64.0}, "rpi4": {"max_latency_ms": 15.0}}


def _cost(arch: str, kwargs: dict[str, Any], target: Any, measure: bool, work: Path) -> float:
    """The latency of an untrained ``arch`` on ``target`` (timed here when ``measure``)."""
    import torch

    from edgeloop.search import measure_latency_ms, predict_cost
    from edgeloop.zoo import build_model, torch_to_onnx

    model = build_model(arch, **kwargs).eval()
    size = int(kwargs.get("input_size", 32))
    path = work / f"{arch}-{abs(hash(json.dumps(kwargs, sort_keys=True)))}.onnx"
    x = torch.zeros(1, int(kwargs.get("in_channels", 3)), size, size)
    torch_to_onnx(model, (x,), path, input_names=["input"], output_names=["output"])
    if measure:
        return measure_latency_ms(path, threads=1)
    return predict_cost(path, target).latency_ms


# Test accuracy of (arch, kwargs, seed, epochs, data): the same on every target, so a zoo model
# (and a front architecture both targets chose) is trained once per seed, not once per target.
_TRAINED: dict[str, float] = {}


def _train(
    arch: str, kwargs: dict[str, Any], seed: int, epochs: int, opts: dict[str, Any]
) -> float:
    from edgeloop.zoo import train

    key = json.dumps([arch, kwargs, seed, epochs, opts], sort_keys=True, default=str)
    if key not in _TRAINED:
        res = train(arch, "textures", epochs, seed=seed, dataset_options=opts, **kwargs)
        _TRAINED[key] = float(res.metrics["accuracy"])
    return _TRAINED[key]


def _stats(values: list[float]) -> dict[str, float]:
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
    }


def run_target(
    target_name: str, args: argparse.Namespace, opts: dict[str, Any], work: Path
) -> dict[str, Any]:
    from edgeloop.data import load_dataset
    from edgeloop.search import Limits, resolve_target, search
    from edgeloop.zoo import kwargs_for

    profile = resolve_target(target_name)
    measure = target_name == "local"
    limits = Limits(**BUDGETS[target_name])
    start = time.perf_counter()
    res = search(
        "mobilenet", out_dir=work / target_name, target=profile, dataset="textures",
        trials=args.trials, epochs=args.epochs, limits=limits, measure=measure,
        dataset_options=opts, seed=0,
    )  # fmt: skip
    wall = time.perf_counter() - start
    ds = load_dataset("textures", "train", **opts)
    comparisons = []
    for arch, extra in ZOO:
        kw = {**kwargs_for(arch, ds), **extra}
        zoo_ms = _cost(arch, kw, profile, measure, work)
        fitting = [t for t in res.front if t.latency_ms <= zoo_ms]
        row: dict[str, Any] = {"zoo": f"{arch} {extra}", "zoo_latency_ms": zoo_ms}
        if not fitting:
            row["front"] = None
            comparisons.append(row)
            continue
        best = max(fitting, key=lambda t: t.accuracy or 0.0)
        front_acc = [_train("mbconv", best.arch_kwargs, s, args.epochs, opts) for s in args.seeds]
        zoo_acc = [_train(arch, extra, s, args.epochs, opts) for s in args.seeds]
        row.update(
            front={"trial": best.number, "params": best.params, "latency_ms": best.latency_ms},
            front_accuracy=_stats(front_acc), zoo_accuracy=_stats(zoo_acc),
            front_runs=front_acc, zoo_runs=zoo_acc,
            same_or_better=statistics.fmean(front_acc) >= statistics.fmean(zoo_acc),
        )  # fmt: skip
        comparisons.append(row)
    return {
        "target": profile.name,
        "latency": "measured here (ONNX Runtime, 1 thread)" if measure else "cost model",
        "limits": limits.to_dict(),
        "search_seconds": wall,
        "comparison_seconds": time.perf_counter() - start - wall,
        "trials": [t.to_dict() for t in res.trials],
        "front": [t.number for t in res.front],
        "states": {s: sum(t.state == s for t in res.trials) for s in {t.state for t in res.trials}},
        "comparisons": comparisons,
    }


def rank_check(args: argparse.Namespace, opts: dict[str, Any]) -> dict[str, Any]:
    """Short (1 epoch) against longer training on a sample of the space: Spearman's rho."""
    import random

    from edgeloop.data import load_dataset
    from edgeloop.search import SPACES, rank_correlation
    from edgeloop.zoo import build_model, evaluate_model, fit, kwargs_for

    space = SPACES["mobilenet"]
    rng = random.Random(0)
    tr = load_dataset("textures", "train", **opts)
    va = load_dataset("textures", "val", **opts)
    base = kwargs_for("mbconv", tr)
    short, long, archs = [], [], []
    for _ in range(args.rank_sample):
        params = {k: rng.choice(v) for k, v in space.choices.items()}
        kw = space.arch_kwargs(params, base)
        accs = []
        for epochs in (1, args.rank_epochs):
            model = build_model("mbconv", **kw)
            fit(model, tr, va, epochs=epochs, seed=0)
            accs.append(evaluate_model(model, va)["accuracy"])
        short.append(accs[0])
        long.append(accs[1])
        archs.append(params)
    rho = rank_correlation(short, long) if len(short) >= 2 else float("nan")
    return {"architectures": archs, "short_epochs": 1, "long_epochs": args.rank_epochs,
            "short_accuracy": short, "long_accuracy": long, "spearman": rho}  # fmt: skip


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
    ap.add_argument("--targets", nargs="+", default=["local", "rpi4"])
    ap.add_argument("--trials", type=int, default=40)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--n", type=int, default=3000, help="textures samples (train 70 %)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--rank-sample", type=int, default=6)
    ap.add_argument("--rank-epochs", type=int, default=6)
    ap.add_argument("--quick", action="store_true", help="smoke run: n=320, 4 trials, 1 seed")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    if args.quick:
        args.n, args.trials, args.epochs, args.seeds = 320, 4, 1, args.seeds[:1]
        args.rank_sample, args.rank_epochs = 3, 2
    opts = {"n": args.n}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="edgeloop-bench-search-") as tmp:
        targets = [run_target(t, args, opts, Path(tmp)) for t in args.targets]
    rank_start = time.perf_counter()
    rank = rank_check(args, opts)
    rank["seconds"] = time.perf_counter() - rank_start
    for t in targets:
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
    print(f"\nrank check: {args.rank_sample} architectures, 1 vs {args.rank_epochs} epochs, "
          f"Spearman rho {rank['spearman']:.3f}")  # fmt: skip
    out = {
        "space": "mobilenet",
        "dataset": "textures",
        "dataset_options": opts,
        "trials_per_target": args.trials,
        "epochs": args.epochs,
        "seeds": args.seeds,
        "quick": args.quick,
        "targets": targets,
        "rank_check": rank,
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
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
