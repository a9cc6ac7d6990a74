"""Compression benchmark: prune50-int8, distillation and binary weights against ORT fp32.

One process, one inference thread, batch 1, on the ``shapes`` dataset (3x32x32 images, 10
classes; train/val/test 4200/600/1200, seed 0):

* **prune50-int8**: a MobileNet (MobileNetV1 shape, ``--width``, stride-1 stem at 32x32) is
  trained on the whole train split, then ``edgeloop.optimize(..., "prune50-int8")`` removes
  half the channels with torch-pruning (two rounds, fine-tuning after each) and quantizes to
  static int8 (QDQ). It is compared with ONNX Runtime fp32 of the unpruned model, and with
  plain ``int8`` for context.
* **distillation**: the same MobileNet teaches a MobileNet of ``--student-width`` (at most a
  quarter of its MACs) from a small labelled set (``--distill-samples``, the first N training
  images; Hinton et al.'s transfer-set setting: the teacher was trained on everything, the
  student gets a little). The student is also trained alone on the same images with the same
  epochs, learning rate and augmentation (``--augment``; the teacher scores the same augmented
  batch the student sees). Reported: the share of the teacher/student-alone accuracy gap that
  distillation recovers, for each transfer-set size.
* **binary**: the baseline MobileNet gets 1-bit weights (per-channel scale, STE training,
  first and last layer float); the packed artifact is compared with its fp32 ONNX file.
* **training time** of every pass.

Latency: the ONNX models are timed in interleaved rounds (background load hits them alike);
ratios use medians. Accuracy is on the whole test split (1200 images).

    python benchmarks/compress.py            # the run quoted in docs/compress.md
    python benchmarks/compress.py --quick    # tiny settings: a smoke run of the script

Prints a table and writes ``benchmarks/results/compress.json``. The trained MobileNet is cached
in ``--workdir`` (default ``benchmarks/results/compress-work``, not committed).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from _timing import latencies, session

RESULTS = Path(__file__).parent / "results" / "compress.json"


def onnx_accuracy(path: Path, data: Any) -> float:
    s = session(path)
    name, out = s.input_names[0], s.output_names[0]
    preds = [s.run_unchecked({name: xb})[out].argmax(1) for xb, _ in data.batches(200)]
    return float((np.concatenate(preds) == data.y).mean())


def export(model: Any, path: Path, meta: dict[str, Any]) -> Path:
    from edgeloop.zoo import export_onnx

    export_onnx(model, path, meta=meta)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=float, default=1.0, help="teacher/baseline MobileNet width")
    ap.add_argument("--epochs", type=int, default=15, help="baseline training epochs")
    ap.add_argument("--train-samples", type=int, default=0, help="training subset (0: all)")
    ap.add_argument("--lr", type=float, default=1e-2, help="peak learning rate (one-cycle)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--student-width", type=float, default=0.4)
    ap.add_argument(
        "--distill-samples",
        default="600",
        help="labelled transfer-set sizes for distillation, comma-separated",
    )
    ap.add_argument(
        "--unlabeled-epochs",
        type=int,
        default=5,
        help="epochs of a third student: the first transfer set plus the rest of the train "
        "split without labels (0: skip)",
    )
    ap.add_argument("--distill-epochs", type=int, default=30)
    ap.add_argument("--augment", default="shift", help="augmentation for the student runs")
    ap.add_argument("--binary-epochs", type=int, default=5)
    ap.add_argument("--temperature", type=float, default=8.0)
    ap.add_argument("--alpha", type=float, default=0.9)
    ap.add_argument("--finetune-epochs", type=int, default=3, help="per pruning round")
    ap.add_argument("--threads", type=int, default=1, help="torch threads for training")
    ap.add_argument("--eval-samples", type=int, default=300, help="per pipeline step")
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument(
        "--workdir", type=Path, default=Path(__file__).parent / "results" / "compress-work"
    )
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--quick", action="store_true", help="tiny settings (smoke run)")
    a = ap.parse_args()
    if a.quick:
        a.width, a.epochs, a.student_width, a.train_samples = 0.25, 1, 0.125, 300
        a.distill_samples, a.unlabeled_epochs = "100", 1
        a.distill_epochs = a.binary_epochs = a.finetune_epochs = 1
        a.rounds, a.runs, a.eval_samples = 3, 5, 100

    import torch

    from edgeloop.data import load_dataset
    from edgeloop.optimize import binarize, distill, load_binary, load_model, optimize, save_binary
    from edgeloop.zoo import (
        build_model,
        evaluate_model,
        fit,
        input_spec_of,
        kwargs_for,
        save_checkpoint,
    )

    torch.set_num_threads(a.threads)
    work = a.workdir
    work.mkdir(parents=True, exist_ok=True)
    tr, va, te = (load_dataset("shapes", s, seed=0) for s in ("train", "val", "test"))
    results: dict[str, Any] = {
        "dataset": "shapes (3x32x32, 10 classes)",
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(a).items()},
        "machine": {"platform": platform.platform(), "processor": platform.processor()},
        "torch_threads": a.threads,
        "inference_threads": 1,
    }
    times: dict[str, float] = {}

    # 1. the baseline MobileNet (cached)
    sub = tr.subset(a.train_samples) if a.train_samples else tr
    base = work / f"mobilenet-w{a.width}-e{a.epochs}-n{len(sub)}-lr{a.lr}-b{a.batch_size}.pt"
    if not base.exists():
        kw = {**kwargs_for("mobilenet", tr), "width": a.width}
        torch.manual_seed(0)
        model = build_model("mobilenet", **kw)
        t0 = time.perf_counter()
        fit(model, sub, va, epochs=a.epochs, lr=a.lr, batch_size=a.batch_size, seed=0)
        times["train baseline"] = time.perf_counter() - t0
        spec = input_spec_of(tr.input_names, tr.shapes(), tr.dtypes())
        save_checkpoint(
            model,
            base,
            arch="mobilenet",
            arch_kwargs=kw,
            input_spec=spec,
            task=tr.task,
            classes=tr.classes,
            dataset={"name": "shapes", "seed": 0},
        )
    teacher, meta = load_model(base)

    # 2. prune50-int8 and int8 through the recipe pipeline
    recipe = {
        "name": "prune50-int8",
        "passes": [
            {
                "prune": {
                    "ratio": 0.5,
                    "steps": 2,
                    "finetune_epochs": a.finetune_epochs,
                    "train_samples": len(sub),
                    "lr": a.lr / 2,
                    "batch_size": a.batch_size,
                }
            },
            "preprocess",
            {"quantize": {"calibration": "minmax", "per_channel": True}},
        ],
    }
    t0 = time.perf_counter()
    optimize(base, recipe, "shapes", out_dir=work / "prune50-int8", eval_samples=a.eval_samples)
    times["prune50-int8 (pipeline)"] = time.perf_counter() - t0
    report = json.loads((work / "prune50-int8" / "report.json").read_text())
    steps = {s["step"]: s for s in report["steps"]}
    times["prune pass (2 rounds + fine-tuning)"] = float(steps["prune"]["seconds"])
    optimize(base, "int8", "shapes", out_dir=work / "int8", eval_samples=a.eval_samples)
    fp32 = export(teacher, work / "fp32.onnx", meta)

    # 3. distillation: for each transfer-set size, the student alone, then distilled
    skw = {**kwargs_for("mobilenet", tr), "width": a.student_width}
    smeta = {**meta, "arch_kwargs": skw}
    runs: list[dict[str, Any]] = []

    def taught(transfer: Any, **kw: Any) -> Any:
        """A fresh student (same seed every time) distilled from the teacher on ``transfer``."""
        torch.manual_seed(0)
        settings = {
            "epochs": a.distill_epochs, "lr": a.lr, "batch_size": a.batch_size,
            "temperature": a.temperature, "alpha": a.alpha, **kw,
        }  # fmt: skip
        return distill(teacher, build_model("mobilenet", **skw), transfer, va, **settings)

    for n in (int(v) for v in str(a.distill_samples).split(",")):
        transfer = tr.subset(n)
        torch.manual_seed(0)
        alone = build_model("mobilenet", **skw)
        t0 = time.perf_counter()
        fit(
            alone, transfer, va, epochs=a.distill_epochs, lr=a.lr, batch_size=a.batch_size,
            seed=0, augment=a.augment,
        )  # fmt: skip
        times[f"student alone ({n} images)"] = time.perf_counter() - t0
        res = taught(transfer, augment=a.augment)
        student = res.model
        times[f"distill ({n} images)"] = res.seconds
        run = {"samples": len(transfer), "alone": alone, "student": student, "res": res}
        if not runs and a.augment not in (None, "", "none"):
            # the control: the same distillation without augmentation
            run["plain"] = taught(transfer).model
            if a.unlabeled_epochs > 0:
                # the rest of the train split, its labels dropped, joins as unlabelled inputs
                rest = tr.take(slice(n, None)).x
                r_semi = taught(
                    transfer, augment=a.augment, unlabeled=rest, epochs=a.unlabeled_epochs
                )
                times[f"distill ({n} + {len(rest)} unlabelled images)"] = r_semi.seconds
                run["semi"] = r_semi.model
                run["semi_unlabeled"] = len(rest)
        runs.append(run)
    student_onnx = export(runs[0]["student"], work / "student.onnx", smeta)

    # 4. binary weights on the baseline MobileNet
    b = binarize(teacher, sub, va, epochs=a.binary_epochs, lr=1e-3, batch_size=a.batch_size)
    times["binarize"] = b.seconds
    packed = work / "mobilenet-binary.npz"
    packed_bytes = save_binary(
        b.model, packed, b.details["binarized"], arch="mobilenet", arch_kwargs=meta["arch_kwargs"]
    )
    unpacked = load_binary(packed)

    # 5. latency, interleaved, one thread, batch 1
    models = {
        "fp32": fp32,
        "int8": work / "int8" / "model.onnx",
        "prune50-int8": work / "prune50-int8" / "model.onnx",
        "student": student_onnx,
    }
    lat = latencies(models, te.x[:1], a.rounds, a.runs)

    def acc(m: Any) -> float:
        return float(evaluate_model(m, te)["accuracy"])

    fp32_acc = onnx_accuracy(fp32, te)
    rows: dict[str, dict[str, Any]] = {}
    for name, path in models.items():
        rows[name] = {
            "bytes": path.stat().st_size,
            "accuracy": onnx_accuracy(path, te),
            "p50_ms": lat[name]["p50_ms"],
            "min_ms": lat[name]["min_ms"],
        }
    rows["fp32"]["macs"] = steps["original"]["macs"]
    rows["prune50-int8"]["macs"] = steps["prune"]["macs"]
    for r in rows.values():
        r["speedup"] = rows["fp32"]["p50_ms"] / r["p50_ms"]
        r["smaller"] = rows["fp32"]["bytes"] / r["bytes"]
        r["accuracy_drop_pts"] = 100 * (fp32_acc - r["accuracy"])
    results["prune50_int8"] = {
        "rows": rows,
        "goals": {
            "faster_5x": rows["prune50-int8"]["speedup"] >= 5,
            "smaller_10x": rows["prune50-int8"]["smaller"] >= 10,
            "drop_le_1pt": rows["prune50-int8"]["accuracy_drop_pts"] <= 1.0,
        },
        "prune_details": {k: v for k, v in steps["prune"]["details"].items() if k != "layers"},
    }
    t_acc = fp32_acc
    transfer_runs = []
    for r in runs:
        a_acc, d_acc = acc(r["alone"]), acc(r["student"])
        gap = t_acc - a_acc
        entry = {
            "samples": r["samples"],
            "student_alone_accuracy": a_acc,
            "student_distilled_accuracy": d_acc,
            "gap_recovered": (d_acc - a_acc) / gap if gap > 0 else None,
        }
        if "plain" in r:
            entry["distilled_without_augment_accuracy"] = acc(r["plain"])
        if "semi" in r:
            s_acc = acc(r["semi"])
            entry["with_unlabeled"] = {
                "unlabeled_samples": r["semi_unlabeled"],
                "epochs": a.unlabeled_epochs,
                "accuracy": s_acc,
                "gap_recovered": (s_acc - a_acc) / gap if gap > 0 else None,
            }
        transfer_runs.append(entry)
    res = runs[0]["res"]
    results["distillation"] = {
        "teacher_accuracy": t_acc,
        "teacher_train_samples": len(sub),
        "runs": transfer_runs,
        "teacher_macs": res.details["teacher_macs"],
        "student_macs": res.details["student_macs"],
        "macs_ratio": res.details["macs_ratio"],
        "temperature": res.details["temperature"],
        "alpha": res.details["alpha"],
        "augment": a.augment,
        "epochs": a.distill_epochs,
    }
    results["distillation"]["goals"] = {
        "macs_le_quarter": res.details["macs_ratio"] <= 0.25,
        "recovers_half_gap": all((t["gap_recovered"] or 0) >= 0.5 for t in transfer_runs),
    }
    if any("with_unlabeled" in t for t in transfer_runs):
        results["distillation"]["goals"]["recovers_half_gap_with_unlabeled"] = all(
            (t["with_unlabeled"]["gap_recovered"] or 0) >= 0.5
            for t in transfer_runs
            if "with_unlabeled" in t
        )
    b_acc = acc(unpacked)
    results["binary"] = {
        "model": f"mobilenet width {a.width} (the baseline)",
        "fp32_onnx_bytes": fp32.stat().st_size,
        "packed_bytes": packed_bytes,
        "smaller": fp32.stat().st_size / packed_bytes,
        "fp32_accuracy": fp32_acc,
        "binary_accuracy": b_acc,
        "accuracy_cost_pts": 100 * (fp32_acc - b_acc),
        "binarized_layers": len(b.details["binarized"]),
        "kept_float": b.details["kept_float"],
        "epochs": a.binary_epochs,
    }
    results["binary"]["goals"] = {"smaller_20x": results["binary"]["smaller"] >= 20}
    results["training_seconds"] = {k: round(v, 1) for k, v in times.items()}
    _print(results)
    from edgeloop._io import atomic_write_text

    atomic_write_text(a.out, json.dumps(results, indent=2, sort_keys=True) + "\n")
    print(f"wrote {a.out}")


def _print(r: dict[str, Any]) -> None:
    p = r["prune50_int8"]["rows"]
    print(f"\nprune50-int8 on MobileNet, shapes 32x32, 1 thread, batch 1 ({r['dataset']})")
    head = ("model", "MACs", "bytes", "p50 ms", "faster", "smaller", "acc", "drop")
    print(
        f"{head[0]:<14}"
        + "".join(f"{h:>{w}}" for h, w in zip(head[1:], (12, 11, 9, 8, 9, 8, 7), strict=True))
    )
    for k, v in p.items():
        macs = f"{v['macs']:,}" if "macs" in v else "-"
        print(
            f"{k:<14}{macs:>12}{v['bytes']:>11,}{v['p50_ms']:>9.3f}{v['speedup']:>7.2f}x"
            f"{v['smaller']:>8.1f}x{100 * v['accuracy']:>7.2f}%{v['accuracy_drop_pts']:>6.2f}"
        )
    d = r["distillation"]
    print(
        f"\ndistillation: teacher {100 * d['teacher_accuracy']:.2f}% "
        f"(student MACs {d['macs_ratio']:.3f} of the teacher's; T={d['temperature']:g}, "
        f"alpha={d['alpha']:g}, augment {d['augment']})"
    )
    for t in d["runs"]:
        rec = t["gap_recovered"]
        print(
            f"  {t['samples']:>5} labelled images: student alone "
            f"{100 * t['student_alone_accuracy']:.2f}%, distilled "
            f"{100 * t['student_distilled_accuracy']:.2f}% (gap recovered "
            f"{'-' if rec is None else format(rec, '.0%')})"
        )
        if "distilled_without_augment_accuracy" in t:
            print(
                f"        distilled without augmentation "
                f"{100 * t['distilled_without_augment_accuracy']:.2f}%"
            )
        if "with_unlabeled" in t:
            u = t["with_unlabeled"]
            rec = u["gap_recovered"]
            print(
                f"        distilled with {u['unlabeled_samples']} more images, unlabelled "
                f"({u['epochs']} epochs): {100 * u['accuracy']:.2f}% (gap recovered "
                f"{'-' if rec is None else format(rec, '.0%')})"
            )
    b = r["binary"]
    print(
        f"binary: {b['fp32_onnx_bytes']:,} B fp32 ONNX -> {b['packed_bytes']:,} B packed "
        f"({b['smaller']:.1f}x smaller); accuracy {100 * b['fp32_accuracy']:.2f}% -> "
        f"{100 * b['binary_accuracy']:.2f}%"
    )
    print("training seconds:", ", ".join(f"{k} {v}" for k, v in r["training_seconds"].items()))
    goals = {**r["prune50_int8"]["goals"], **d["goals"], **b["goals"]}
    print("goals:", ", ".join(f"{k} {'met' if v else 'MISSED'}" for k, v in goals.items()))


if __name__ == "__main__":
    main()
