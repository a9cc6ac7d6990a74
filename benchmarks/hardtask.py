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
    python benchmarks/hardtask.py --compress --jobs 3          # compression costs (below)
    python benchmarks/hardtask.py --compress --quick           # its smoke run

``--compress`` measures what each compression costs on this task instead, for each seed, from
the zoo MobileNet (width 0.25, trained as above on the train split; cached in ``--workdir``
and reused, so a width run followed by ``--compress`` trains it once). Calibration and
fine-tuning see only the train and val splits; every accuracy is on the held-out test split
(2000 images): int8 static (the ``int8`` preset, calibrated on val), int8 dynamic, int4 (the
``int4`` preset: weight-only MatMulNBits; the MobileNet has no MatMul, so it is expected to
change nothing, and the row says how many weights it quantized), prune50-int8 (half the
channels in two L2 rounds, ``--finetune-epochs`` after each, then static int8), binary weights
(``--binary-epochs`` of straight-through training, packed size) and distillation: the
baseline teaches a MobileNet of width ``--student-width`` (0.37 of its MACs: small widths keep
a minimum channel count) from the first ``--distill-labels`` labelled training images plus the
rest of the train split without labels (``--distill-epochs``, ``--temperature``, ``--alpha``:
the transfer-set setting docs/compress.md measured); the student alone trains on the same
labelled images with the same initialisation, learning rate, augmentation and compute (epochs
scaled so both see as many samples). Each seed's CPU seconds per part are recorded, and the
wall a quiet machine would take is estimated from them (CPU time is what load changes least).
Latency: batch 1, one thread, interleaved rounds. Writes
``benchmarks/results/hardtask-compress.json``.

Prints a table (mean and standard deviation over seeds) and writes
``benchmarks/results/hardtask.json`` with every run; ``BENCH_LOAD_BEFORE`` (e.g. the output of
``uptime`` taken before the run) is recorded when set, so a figure taken under load says so.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results" / "hardtask.json"
COMPRESS_RESULTS = Path(__file__).parent / "results" / "hardtask-compress.json"
WORKDIR = Path(__file__).parent / "results" / "hardtask-work"


def _cache_path(
    work: Path, width: float, seed: int, epochs: int | None, opts: dict[str, Any]
) -> Path:
    tag = "-".join(f"{k}{v}" for k, v in sorted(opts.items()))
    return work / f"mobilenet-w{width}-s{seed}-e{epochs or 'default'}-{tag or 'defaults'}.pt"


def run_one(
    width: float,
    seed: int,
    epochs: int | None,
    opts: dict[str, Any],
    work: Path | None = None,
) -> dict[str, Any]:
    import torch

    from edgeloop.data import load_dataset, sensor_shift
    from edgeloop.zoo import evaluate_model, train

    torch.set_num_threads(1)
    start = time.perf_counter()
    out = None
    if work is not None:
        work.mkdir(parents=True, exist_ok=True)
        out = _cache_path(work, width, seed, epochs, opts)
    res = train(
        "mobilenet",
        "textures",
        epochs,
        seed=seed,
        threads=1,
        dataset_options=opts,
        width=width,
        out=out,
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


def _onnx_accuracy(path: Path, data: Any) -> float:
    import numpy as np

    from _timing import session

    s = session(path)
    name, out = s.input_names[0], s.output_names[0]
    preds = [s.run_unchecked({name: xb})[out].argmax(1) for xb, _ in data.batches(200)]
    return float((np.concatenate(preds) == data.y).mean())


def compress_one(seed: int, a: dict[str, Any], opts: dict[str, Any]) -> dict[str, Any]:
    """Every compression of one seed's baseline, scored on that seed's test split."""
    import copy
    import tempfile

    import torch

    from _timing import latencies
    from edgeloop.data import load_dataset
    from edgeloop.optimize import (
        binarize,
        distill,
        load_model,
        optimize,
        prune,
        save_binary,
    )
    from edgeloop.zoo import build_model, evaluate_model, export_onnx, fit

    torch.set_num_threads(1)
    work = Path(a["workdir"])
    base = _cache_path(work, a["width"], seed, a["epochs"], opts)
    secs: dict[str, float] = {}
    cpu: dict[str, float] = {}  # CPU seconds of this process: what a quiet run's wall is made of

    @contextlib.contextmanager
    def timed(part: str) -> Iterator[None]:
        t0, c0 = time.perf_counter(), time.process_time()
        yield
        secs[part] = time.perf_counter() - t0
        cpu[part] = time.process_time() - c0

    c_start = time.process_time()
    if not base.exists():  # the width run did not leave it: train it here
        with timed("train baseline"):
            run_one(a["width"], seed, a["epochs"], opts, work)
    tr, va, te = (load_dataset("textures", s, seed=seed, **opts) for s in ("train", "val", "test"))
    teacher, meta = load_model(base)
    teacher.eval()

    def acc(m: Any) -> float:
        m.eval()
        return float(evaluate_model(m, te)["accuracy"])

    rows: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix=f"hardtask-s{seed}-") as tmp:
        d = Path(tmp)
        fp32 = d / "fp32.onnx"
        export_onnx(teacher, fp32, meta=meta)
        models = {"fp32": fp32}
        # post-training ONNX recipes: calibrated and budgeted on val, scored on test
        for name in ("int8", "int8-dynamic", "int4"):
            with timed(name):
                card = optimize(fp32, name, va, out_dir=d / name, eval_samples=a["eval_samples"])
            models[name] = d / name / "model.onnx"
            rows[name] = {"warnings": list(getattr(card, "warnings", []) or [])}
        # prune50-int8: prune on train (fine-tuning scored on val), then static int8
        pruned = copy.deepcopy(teacher)
        torch.manual_seed(seed)
        with timed("prune50-int8"):
            pr = prune(
                pruned, ratio=0.5, data=tr, val=va, importance="l2", steps=2,
                finetune_epochs=a["finetune_epochs"], seed=seed, max_drop=None,
            )  # fmt: skip
            pruned.eval()
            optimize(pruned, "int8", va, out_dir=d / "p50", eval_samples=a["eval_samples"])
        models["prune50-int8"] = d / "p50" / "model.onnx"
        rows["prune50-int8"] = {
            "macs_before": pr.details.get("macs_before"),
            "macs_after": pr.details.get("macs_after"),
            "pruned_fp32_accuracy": acc(pruned),
        }
        # binary weights (straight-through training on train)
        torch.manual_seed(seed)
        with timed("binary"):
            b = binarize(
                teacher, tr, va, epochs=a["binary_epochs"], lr=1e-3, seed=seed, max_drop=None
            )
        packed = save_binary(
            b.model, d / "binary.npz", b.details["binarized"], arch="mobilenet",
            arch_kwargs=meta["arch_kwargs"],
        )  # fmt: skip
        rows["binary"] = {"bytes": int(packed), "accuracy": acc(b.model)}
        # distillation: the first L labelled images (+ the rest without labels) for the student
        labelled = tr.subset(a["distill_labels"])
        rest = tr.take(slice(a["distill_labels"], None)).x
        skw = {**meta["arch_kwargs"], "width": a["student_width"]}
        torch.manual_seed(seed)
        alone = build_model("mobilenet", **skw)
        # same compute: the student alone sees as many samples as the distilled one
        alone_epochs = max(1, round(a["distill_epochs"] * len(tr) / max(1, len(labelled))))
        with timed("student alone"):  # no validation pass per epoch: nothing selects on it
            fit(
                alone, labelled, None, epochs=alone_epochs, lr=3e-3, seed=seed, augment=a["augment"]
            )
        torch.manual_seed(seed)
        with timed("distill"):
            res = distill(
                teacher, build_model("mobilenet", **skw), labelled, va, epochs=a["distill_epochs"],
                temperature=a["temperature"], alpha=a["alpha"], seed=seed, augment=a["augment"],
                unlabeled=rest,
            )  # fmt: skip
        student_onnx = d / "student.onnx"
        export_onnx(res.model.eval(), student_onnx, meta={**meta, "arch_kwargs": skw})
        models["distilled student"] = student_onnx
        lat = latencies(models, te.x[:1], a["rounds"], a["runs"])
        fp32_acc = _onnx_accuracy(fp32, te)
        for name, path in models.items():
            row = rows.setdefault(name, {})
            row.update(
                bytes=path.stat().st_size,
                accuracy=_onnx_accuracy(path, te),
                p50_ms=lat[name]["p50_ms"],
                speedup=lat["fp32"]["p50_ms"] / lat[name]["p50_ms"],
            )
        rows["binary"]["speedup"] = None  # no 1-bit kernels: unpacked it runs at fp32 speed
        a_acc, d_acc = acc(alone), rows["distilled student"]["accuracy"]
        gap = fp32_acc - a_acc
        distillation = {
            "teacher_accuracy": fp32_acc,
            "student_alone_accuracy": a_acc,
            "distilled_accuracy": d_acc,
            "gap_recovered": (d_acc - a_acc) / gap if gap > 0 else None,
            "macs_ratio": res.details.get("macs_ratio"),
            "labelled": len(labelled),
            "unlabelled": len(rest),
            "alone_epochs": alone_epochs,
            "distill_epochs": a["distill_epochs"],
        }
    for row in rows.values():
        row["cost_pts"] = 100 * (fp32_acc - row["accuracy"])
        if row.get("bytes"):
            row["smaller"] = rows["fp32"]["bytes"] / row["bytes"]
    return {
        "seed": seed,
        "rows": rows,
        "distillation": distillation,
        "seconds": {k: round(v, 1) for k, v in secs.items()},
        "cpu_seconds": {
            **{k: round(v, 1) for k, v in cpu.items()},
            "total": round(time.process_time() - c_start, 1),
        },
    }


COMPRESS_ORDER = (
    "fp32", "int8", "int8-dynamic", "int4", "prune50-int8", "binary", "distilled student"
)  # fmt: skip


def _mean_sd(v: list[float]) -> tuple[float, float]:
    return statistics.fmean(v), statistics.stdev(v) if len(v) > 1 else 0.0


def summarise_compress(runs: list[dict[str, Any]]) -> dict[str, Any]:
    rows = []
    for name in COMPRESS_ORDER:
        rs = [r["rows"][name] for r in runs if name in r["rows"]]
        if not rs:
            continue
        acc, acc_sd = _mean_sd([x["accuracy"] for x in rs])
        cost, cost_sd = _mean_sd([x["cost_pts"] for x in rs])
        sp = [x["speedup"] for x in rs if x.get("speedup")]
        rows.append(
            {
                "model": name,
                "accuracy_mean": acc,
                "accuracy_std": acc_sd,
                "cost_pts_mean": cost,
                "cost_pts_std": cost_sd,
                "cost_pts_worst": max(x["cost_pts"] for x in rs),
                "smaller_mean": statistics.fmean(x.get("smaller", 1.0) for x in rs),
                "speedup_median": statistics.median(sp) if sp else None,
            }
        )
    dist = [r["distillation"] for r in runs]
    d_summary = {
        k: _mean_sd([x[k] for x in dist])
        for k in ("teacher_accuracy", "student_alone_accuracy", "distilled_accuracy")
    }
    rec = [x["gap_recovered"] for x in dist if x["gap_recovered"] is not None]
    return {
        "rows": rows,
        "distillation": {
            **{k: {"mean": m, "std": sd} for k, (m, sd) in d_summary.items()},
            "gap_recovered": _mean_sd(rec) if rec else None,
            "macs_ratio": dist[0]["macs_ratio"] if dist else None,
        },
    }


def cpu_estimate(runs: list[dict[str, Any]], jobs: int) -> dict[str, Any]:
    """Mean CPU seconds per part and seed, and the wall those make on a quiet machine: the
    seeds run ``jobs`` at a time, one thread each, on ``os.cpu_count()`` cores. CPU time is
    what load on a shared machine changes least, so this is how a loaded run sizes a quiet one.
    """
    keys = sorted({k for r in runs for k in r.get("cpu_seconds", {})})
    per = {k: statistics.fmean(r["cpu_seconds"].get(k, 0.0) for r in runs) for k in keys}
    cores = os.cpu_count() or 1
    totals = [r.get("cpu_seconds", {}).get("total", 0.0) for r in runs]
    wall, jobs = 0.0, max(1, jobs)
    for i in range(0, len(totals), jobs):  # waves of `jobs` seeds sharing the cores
        wave = totals[i : i + jobs]
        wall += max(sum(wave) / min(cores, len(wave)), max(wave))
    return {"per_seed": per, "cores": cores, "jobs": jobs, "quiet_wall_s": wall}


def print_compress(summary: dict[str, Any]) -> None:
    print(f"{'model':>18} {'test acc':>16} {'cost pts':>14} {'worst':>6} {'smaller':>8} "
          f"{'faster':>7}")  # fmt: skip
    for r in summary["rows"]:
        sp = f"{r['speedup_median']:.2f}x" if r["speedup_median"] else "-"
        print(
            f"{r['model']:>18} {r['accuracy_mean']:>9.3f} ± {r['accuracy_std']:.3f}"
            f" {r['cost_pts_mean']:>7.2f} ± {r['cost_pts_std']:.2f} {r['cost_pts_worst']:>6.2f}"
            f" {r['smaller_mean']:>7.1f}x {sp:>7}"
        )
    d = summary["distillation"]
    print(
        "distillation (student width, same labelled images): teacher"
        f" {d['teacher_accuracy']['mean']:.3f}, student alone"
        f" {d['student_alone_accuracy']['mean']:.3f} ± {d['student_alone_accuracy']['std']:.3f},"
        f" distilled {d['distilled_accuracy']['mean']:.3f} ± {d['distilled_accuracy']['std']:.3f}"
        f", MACs ratio {d['macs_ratio']}"
    )
    if d["gap_recovered"]:
        m, sd = d["gap_recovered"]
        print(f"gap recovered {100 * m:.0f} % ± {100 * sd:.0f}")


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


BAND = (0.80, 0.95)  # the goal for the default (narrowest) MobileNet's fp32 accuracy
WIDER_GAIN = 0.03  # ... and a MobileNet twice as wide must score at least 3 points higher


def goal_checks(runs: list[dict[str, Any]], widths: list[float]) -> dict[str, Any]:
    """The textures task's two goals, judged on the runs: the narrowest width's mean test
    accuracy inside 80-95 %, and a width twice that scoring >= 3 points higher, on the mean
    and seed by seed (each seed is its own dataset, so the pairs share their test split)."""
    lines: list[str] = []
    out: dict[str, Any] = {}
    base = min(widths)
    acc = {(r["width"], r["seed"]): r["accuracy"] for r in runs}
    ref = [a for (w, _), a in acc.items() if w == base]
    if ref:
        m = statistics.fmean(ref)
        met = BAND[0] <= m <= BAND[1]
        out["band"] = {"width": base, "mean": m, "range": list(BAND), "met": met}
        lines.append(
            f"goal: width {base} mean {100 * m:.1f} % inside {100 * BAND[0]:.0f}-"
            f"{100 * BAND[1]:.0f} %: {'met' if met else 'MISSED'}"
        )
    wide = 2 * base
    pairs = {s: (acc[(wide, s)] - a) for (w, s), a in acc.items() if w == base and (wide, s) in acc}
    if pairs:
        gap = statistics.fmean(pairs.values())
        met = gap >= WIDER_GAIN
        every = all(g >= WIDER_GAIN for g in pairs.values())
        out["wider"] = {
            "widths": [base, wide],
            "gain_mean": gap,
            "gain_by_seed": {str(s): g for s, g in sorted(pairs.items())},
            "min_gain": WIDER_GAIN,
            "met": met,
            "met_every_seed": every,
        }
        per = ", ".join(f"seed {s} {100 * g:+.1f}" for s, g in sorted(pairs.items()))
        lines.append(
            f"goal: width {wide} >= {100 * WIDER_GAIN:.0f} points above width {base}:"
            f" {100 * gap:+.1f} on the mean ({per}): {'met' if met else 'MISSED'}"
            + ("" if every or not met else " (not on every seed)")
        )
    elif len(widths) > 1:
        lines.append(f"goal (twice as wide): not judged, width {wide} was not run")
    return {**out, "lines": lines}


def _write(path: Path, out: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(out, indent=2) + "\n")
    tmp.replace(path)
    print(f"wrote {path}")


def main_compress(args: argparse.Namespace, opts: dict[str, Any]) -> None:
    a = {
        k: (str(v) if isinstance(v, Path) else v)
        for k, v in vars(args).items()
        if k not in ("out", "widths", "seeds", "jobs", "quick", "compress", "n", "difficulty")
    }
    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = [pool.submit(compress_one, s, a, opts) for s in args.seeds]
        runs = [f.result() for f in futures]
    wall = time.perf_counter() - start
    summary = summarise_compress(runs)
    print_compress(summary)
    cpu = cpu_estimate(runs, args.jobs)
    summary["cpu"] = cpu
    parts = ", ".join(f"{k} {v:.0f}" for k, v in cpu["per_seed"].items())
    print(f"CPU seconds per seed (mean): {parts}")
    print(
        f"wall {wall:.0f} s ({args.jobs} job(s)); from the CPU seconds, a quiet machine with"
        f" {cpu['cores']} cores would take about {cpu['quiet_wall_s']:.0f} s"
    )
    out = {
        "dataset": "textures",
        "arch": "mobilenet",
        "seeds": args.seeds,
        "settings": a,
        "dataset_options": opts,
        "jobs": args.jobs,
        "quick": args.quick,
        "runs": runs,
        "summary": summary,
        "wall_seconds": wall,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "load_before": os.environ.get("BENCH_LOAD_BEFORE"),
        "load_after": os.getloadavg(),
    }
    _write(args.out or COMPRESS_RESULTS, out)


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
    ap.add_argument("--out", type=Path, default=None, help="default: results/hardtask*.json")
    ap.add_argument("--workdir", type=Path, default=WORKDIR, help="trained models (cache)")
    ap.add_argument("--compress", action="store_true", help="measure the compression costs")
    ap.add_argument("--width", type=float, default=0.25, help="--compress: the baseline's width")
    ap.add_argument("--student-width", type=float, default=0.125)
    ap.add_argument("--distill-labels", type=int, default=1000)
    ap.add_argument(
        "--distill-epochs", type=int, default=8, help="over all train images (docs/compress.md)"
    )
    ap.add_argument("--temperature", type=float, default=8.0, help="distillation temperature")
    ap.add_argument("--alpha", type=float, default=0.9, help="weight of the soft targets")
    ap.add_argument("--finetune-epochs", type=int, default=2, help="per pruning round")
    ap.add_argument("--binary-epochs", type=int, default=5, help="straight-through training")
    ap.add_argument("--augment", default="shift")
    ap.add_argument("--eval-samples", type=int, default=300, help="per optimize step")
    ap.add_argument("--rounds", type=int, default=10, help="latency rounds (interleaved)")
    ap.add_argument("--runs", type=int, default=20, help="latency runs per round")
    args = ap.parse_args()
    if args.quick:
        args.n, args.epochs, args.seeds = 400, 1, args.seeds[:1]
        args.distill_labels, args.distill_epochs = 100, 1
        args.finetune_epochs = args.binary_epochs = 1
        args.eval_samples, args.rounds, args.runs = 50, 2, 5
    opts = {k: v for k, v in (("n", args.n), ("difficulty", args.difficulty)) if v is not None}
    if args.compress:
        main_compress(args, opts)
        return
    args.out = args.out or RESULTS
    jobs = [(w, s) for s in args.seeds for w in args.widths]
    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = [pool.submit(run_one, w, s, args.epochs, opts, args.workdir) for w, s in jobs]
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
    checks = goal_checks(runs, args.widths)
    for line in checks["lines"]:
        print(line)
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
        "goals": {k: v for k, v in checks.items() if k != "lines"},
        "wall_seconds": wall,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "load_before": os.environ.get("BENCH_LOAD_BEFORE"),
        "load_after": os.getloadavg(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(out, indent=2) + "\n")
    tmp.replace(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
