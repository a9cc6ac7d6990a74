"""Hard-task benchmark: how the zoo MobileNet scores on the generated ``textures`` dataset.

The ``textures`` task (16 classes: 4 outlines x 4 fills, on textured clutter with occluders,
colour, contrast and noise variation, all scaled by one ``difficulty`` knob; train/val/test
7000/1000/2000) exists so
that optimization costs show: fp32 should sit between 80 and 95 % test accuracy, and the task
should be hard through its inputs, so a model twice as wide scores at least 3 points higher.

For each seed and each MobileNet width, ``edgeloop.zoo.train`` (the project's own loop:
AdamW, one-cycle schedule, the arch's default learning rate and batch size) trains on the
train split of that seed's dataset and scores the test split; each run uses one torch thread.
Also reported: the test accuracy after :func:`edgeloop.data.sensor_shift` at severity 1 (the
covariate shift the drift experiments apply), without retraining.

    python benchmarks/hardtask.py                    # widths 0.25 and 0.5, seeds 0 1 2
    python benchmarks/hardtask.py --jobs 6           # the six runs side by side (6 cores)
    python benchmarks/hardtask.py --quick            # a smoke run: tiny data, one epoch
    python benchmarks/hardtask.py --difficulty 0.6   # tune: the dataset's one nuisance knob

Prints a table (mean and standard deviation over seeds) and writes
``benchmarks/results/hardtask.json`` with every run; ``BENCH_LOAD_BEFORE`` (e.g. the output of
``uptime`` taken before the run) is recorded when set, so a figure taken under load says so.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results" / "hardtask.json"


def run_one(width: float, seed: int, epochs: int | None, opts: dict[str, Any]) -> dict[str, Any]:
    import torch

    from edgeloop.data import load_dataset, sensor_shift
    from edgeloop.zoo import evaluate_model, train

    torch.set_num_threads(1)
    start = time.perf_counter()
    res = train(
        "mobilenet", "textures", epochs, seed=seed, threads=1, dataset_options=opts, width=width
    )
    seconds = time.perf_counter() - start
    test = load_dataset("textures", "test", seed=seed, **opts)
    shifted = replace(test, x=sensor_shift(test.x, 1.0, seed=seed), sha256="")
    return {
        "width": width,
        "seed": seed,
        "epochs": res.fit.epochs,
        "accuracy": res.metrics["accuracy"],
        "macro_f1": res.metrics["macro_f1"],
        "shifted_accuracy": evaluate_model(res.model, shifted)["accuracy"],
        "train_loss": res.fit.final.get("train_loss"),
        "fit_seconds": res.fit.seconds,
        "wall_seconds": seconds,
        "train_samples": len(load_dataset("textures", "train", seed=seed, **opts)),
    }


def summarise(runs: list[dict[str, Any]], widths: list[float]) -> list[dict[str, Any]]:
    rows = []
    for w in widths:
        acc = [r["accuracy"] for r in runs if r["width"] == w]
        shifted = [r["shifted_accuracy"] for r in runs if r["width"] == w]
        secs = [r["fit_seconds"] for r in runs if r["width"] == w]
        rows.append(
            {
                "width": w,
                "runs": len(acc),
                "accuracy_mean": statistics.fmean(acc),
                "accuracy_std": statistics.stdev(acc) if len(acc) > 1 else 0.0,
                "accuracy_min": min(acc),
                "accuracy_max": max(acc),
                "shifted_accuracy_mean": statistics.fmean(shifted),
                "fit_seconds_mean": statistics.fmean(secs),
            }
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--widths", type=float, nargs="+", default=[0.25, 0.5])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=None, help="default: the arch's own (10)")
    ap.add_argument("--n", type=int, default=None, help="dataset size (default 10000)")
    ap.add_argument(
        "--difficulty", type=float, default=None, help="dataset option (default: the dataset's)"
    )
    ap.add_argument("--jobs", type=int, default=1, help="runs in parallel, one thread each")
    ap.add_argument("--quick", action="store_true", help="smoke run: n=400, 1 epoch, 1 seed")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    if args.quick:
        args.n, args.epochs, args.seeds = 400, 1, args.seeds[:1]
    opts = {k: v for k, v in (("n", args.n), ("difficulty", args.difficulty)) if v is not None}
    jobs = [(w, s) for s in args.seeds for w in args.widths]
    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = [pool.submit(run_one, w, s, args.epochs, opts) for w, s in jobs]
        runs = [f.result() for f in futures]
    wall = time.perf_counter() - start
    rows = summarise(runs, args.widths)
    print(f"{'width':>6} {'runs':>4} {'test acc':>16} {'min':>6} {'max':>6} "
          f"{'shifted':>8} {'fit s':>7}")  # fmt: skip
    for r in rows:
        print(
            f"{r['width']:>6} {r['runs']:>4} {r['accuracy_mean']:>9.3f} ± {r['accuracy_std']:.3f}"
            f" {r['accuracy_min']:>6.3f} {r['accuracy_max']:>6.3f}"
            f" {r['shifted_accuracy_mean']:>8.3f} {r['fit_seconds_mean']:>7.0f}"
        )
    if len(rows) >= 2:
        gap = rows[-1]["accuracy_mean"] - rows[0]["accuracy_mean"]
        print(f"width {rows[-1]['width']} - width {rows[0]['width']}: {100 * gap:+.1f} points")
    out = {
        "dataset": "textures",
        "arch": "mobilenet",
        "widths": args.widths,
        "seeds": args.seeds,
        "epochs": runs[0]["epochs"] if runs else args.epochs,
        "dataset_options": opts,
        "jobs": args.jobs,
        "quick": args.quick,
        "runs": runs,
        "summary": rows,
        "wall_seconds": wall,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "load_before": os.environ.get("BENCH_LOAD_BEFORE"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(out, indent=2) + "\n")
    tmp.replace(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
