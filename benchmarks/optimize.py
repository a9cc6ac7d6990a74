"""Optimize benchmark: edgeloop's presets against ONNX Runtime fp32 and ORT's own quantizers.

Two zoo models, trained on their tasks here, each in one process, one inference thread, batch 1:

* MobileNet (MobileNetV1 shape, width 1.0) on ``shapes`` (800 images) at 64x64 pixels
  (stride-1 stem, about 180 M MACs): fp32; ORT ``quantize_static`` with default arguments;
  ORT's fastest of three hand-tuned static configurations (pre-processed; S8S8 per-tensor,
  U8S8 per-tensor, U8S8 per-channel); edgeloop ``int8`` with ``max_drop=0.005``.
* The token transformer (dim 256, 4 layers, ff 1024, 48 tokens) on ``tokens`` (1200): fp32; ORT
  ``quantize_dynamic`` with default arguments; edgeloop ``int8-dynamic`` with
  ``min_cosine=0.99``; edgeloop ``int4`` with ``min_cosine=0.98``.

Latency: every model of a group is timed in interleaved rounds (so background load hits them
alike); the table shows the median and the minimum over all runs; goals are given both ways.
Accuracy and per-sample cosine similarity to fp32 are on the whole test split.

    python benchmarks/optimize.py                 # the full run quoted in docs/optimize.md
    python benchmarks/optimize.py --quick         # fewer epochs and samples (a smoke run)

Prints a table and writes ``benchmarks/results/optimize.json``. Trained checkpoints are cached
in ``--workdir`` (default ``benchmarks/results/optimize-work``, not committed).
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

RESULTS = Path(__file__).parent / "results" / "optimize.json"


def _outputs(path: Path, inputs: dict[str, np.ndarray]) -> np.ndarray:
    s = session(path)
    n = len(next(iter(inputs.values())))
    return np.concatenate(
        [
            s.run_unchecked({k: v[i : i + 64] for k, v in inputs.items()})[s.output_names[0]]
            for i in range(0, n, 64)
        ]
    )


def _cosine(ref: np.ndarray, got: np.ndarray) -> np.ndarray:
    r, g = ref.reshape(len(ref), -1), got.reshape(len(got), -1)
    return (r * g).sum(1) / (np.linalg.norm(r, axis=1) * np.linalg.norm(g, axis=1) + 1e-30)


def _rows(
    models: dict[str, Path],
    fp32: Path,
    x: dict[str, np.ndarray],
    y: Any,
    lat: dict[str, dict[str, float]],
) -> dict[str, dict[str, Any]]:
    """Size, test accuracy, worst per-sample cosine to fp32 and latency of each model."""
    ref = _outputs(fp32, x)
    rows = {}
    for name, path in models.items():
        out = _outputs(path, x)
        rows[name] = {
            "size_bytes": _size(path),
            "accuracy": float((out.argmax(1) == y).mean()),
            "cosine_min": float(_cosine(ref, out).min()),
            **lat[name],
        }
    return rows


def _size(path: Path) -> int:
    from edgeloop.optimize._model import model_size

    return model_size(path)


class _Reader:
    """The same calibration batches for ORT's quantize_static (a plain data reader)."""

    def __init__(self, x: dict[str, np.ndarray], batch: int = 8) -> None:
        self.x, self.batch, self.i = x, batch, 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        n = len(next(iter(self.x.values())))
        if self.i >= n:
            return None
        out = {k: v[self.i : self.i + self.batch] for k, v in self.x.items()}
        self.i += self.batch
        return out

    def rewind(self) -> None:
        self.i = 0


def _train(
    arch: str,
    dataset: str,
    epochs: int,
    work: Path,
    options: dict[str, Any],
    tag: str = "",
    **kw: Any,
) -> Path:
    from edgeloop.zoo import export_onnx, train

    ckpt = work / f"{arch}{tag}.pt"
    onnx_path = work / f"{arch}{tag}_fp32.onnx"
    if not ckpt.exists():
        t0 = time.perf_counter()
        res = train(arch, dataset, epochs, out=ckpt, dataset_options=options, **kw)
        print(f"trained {arch} in {time.perf_counter() - t0:.0f} s: {res.metrics}", flush=True)
    if not onnx_path.exists():
        export_onnx(ckpt, onnx_path)
    return onnx_path


def mobilenet(work: Path, epochs: int, n: int, calib: int) -> dict[str, Any]:
    from onnxruntime.quantization import QuantFormat, QuantType, quant_pre_process, quantize_static

    from edgeloop.data import load_dataset
    from edgeloop.optimize import optimize

    opts = {"size": 64, "n": n}
    fp32 = _train("mobilenet", "shapes", epochs, work, opts, width=1.0)
    test = load_dataset("shapes", "test", seed=0, **opts)
    val = load_dataset("shapes", "val", seed=0, **opts)
    x = {"input": test.inputs[next(iter(test.inputs))]}
    cal = {"input": load_dataset("shapes", "train", seed=0, **opts).subset(calib).x}
    models: dict[str, Path] = {"fp32": fp32}

    models["ort-default"] = work / "mb_ort_default.onnx"
    quantize_static(str(fp32), str(models["ort-default"]), _Reader(cal))  # type: ignore[arg-type]
    pre = work / "mb_pre.onnx"
    quant_pre_process(str(fp32), str(pre))
    tuned = {
        "ort-s8s8": {"activation_type": QuantType.QInt8, "per_channel": False},
        "ort-u8s8": {"activation_type": QuantType.QUInt8, "per_channel": False},
        "ort-u8s8-pc": {"activation_type": QuantType.QUInt8, "per_channel": True},
    }
    for name, kw in tuned.items():
        models[name] = work / f"mb_{name}.onnx"
        quantize_static(
            str(pre),
            str(models[name]),
            _Reader(cal),
            quant_format=QuantFormat.QDQ,
            weight_type=QuantType.QInt8,
            **kw,
        )  # type: ignore[arg-type]
    t0 = time.perf_counter()
    card = optimize(
        fp32, "int8", val, out_dir=work / "mb_edgeloop", max_drop=0.005, calib_samples=calib
    )
    seconds = time.perf_counter() - t0
    models["edgeloop-int8"] = work / "mb_edgeloop" / "model.onnx"

    lat = latencies(models, {"input": x["input"][:1]}, rounds=5, runs=20, warmup=5)
    rows = _rows(models, fp32, x, test.y, lat)
    best = min((k for k in tuned), key=lambda k: rows[k]["p50_ms"])
    ours, base = rows["edgeloop-int8"], rows["fp32"]
    return {
        "model": "mobilenet width 1.0, shapes 64x64",
        "macs": card.macs,
        "test_samples": len(test),
        "rows": rows,
        "ort_best": best,
        "optimize_seconds": seconds,
        "goals": {
            "smaller_x": base["size_bytes"] / ours["size_bytes"],
            "faster_x": base["p50_ms"] / ours["p50_ms"],
            "faster_x_by_min": base["min_ms"] / ours["min_ms"],
            "accuracy_drop_pt": (base["accuracy"] - ours["accuracy"]) * 100,
            "vs_ort_best_x": rows[best]["p50_ms"] / ours["p50_ms"],
            "vs_ort_best_x_by_min": rows[best]["min_ms"] / ours["min_ms"],
        },
    }


def mobilenet_accuracy(work: Path, epochs: int, n: int, calib: int) -> dict[str, Any]:
    """Accuracy kept by int8 on the zoo's default MobileNet (width 0.25, 32x32), which trains
    to a useful accuracy on this machine in minutes (the width-1.0 64x64 one does not)."""
    from onnxruntime.quantization import quantize_static

    from edgeloop.data import load_dataset
    from edgeloop.optimize import optimize

    opts = {"n": n}
    fp32 = _train("mobilenet", "shapes", epochs, work, opts, tag="_small", width=0.25)
    test = load_dataset("shapes", "test", seed=0, **opts)
    val = load_dataset("shapes", "val", seed=0, **opts)
    x = test.inputs
    cal = {"input": load_dataset("shapes", "train", seed=0, **opts).subset(calib).x}
    ort_default = work / "mbs_ort_default.onnx"
    quantize_static(str(fp32), str(ort_default), _Reader(cal))  # type: ignore[arg-type]
    t0 = time.perf_counter()
    optimize(fp32, "int8", val, out_dir=work / "mbs_edgeloop", max_drop=0.005, calib_samples=calib)
    seconds = time.perf_counter() - t0
    models = {
        "fp32": fp32,
        "ort-default": ort_default,
        "edgeloop-int8": work / "mbs_edgeloop" / "model.onnx",
    }
    lat = latencies(models, {k: v[:1] for k, v in x.items()}, rounds=5, runs=20, warmup=5)
    rows = _rows(models, fp32, x, test.y, lat)
    base, ours = rows["fp32"], rows["edgeloop-int8"]
    return {
        "model": "mobilenet width 0.25, shapes 32x32 (accuracy check)",
        "test_samples": len(test),
        "rows": rows,
        "optimize_seconds": seconds,
        "goals": {
            "smaller_x": base["size_bytes"] / ours["size_bytes"],
            "accuracy_drop_pt": (base["accuracy"] - ours["accuracy"]) * 100,
            "ort_default_accuracy_drop_pt": (base["accuracy"] - rows["ort-default"]["accuracy"])
            * 100,
        },
    }


def transformer(work: Path, epochs: int, n_train: int, n_eval: int) -> dict[str, Any]:
    from onnxruntime.quantization import quantize_dynamic

    from edgeloop.data import load_dataset
    from edgeloop.optimize import optimize
    from edgeloop.optimize._lowbit import matmul_weight_bytes
    from edgeloop.optimize._model import load_onnx

    opts = {"n": n_train}
    fp32 = _train("transformer", "tokens", epochs, work, opts, dim=256, heads=4, layers=4, ff=1024)
    test = load_dataset("tokens", "test", seed=0, **opts).subset(n_eval)
    val = load_dataset("tokens", "val", seed=0, **opts)
    models: dict[str, Path] = {"fp32": fp32, "ort-dynamic-default": work / "tf_ort_dynamic.onnx"}
    quantize_dynamic(str(fp32), str(models["ort-dynamic-default"]))
    t0 = time.perf_counter()
    optimize(fp32, "int8-dynamic", val, out_dir=work / "tf_dyn", min_cosine=0.99)
    t_dyn = time.perf_counter() - t0
    t0 = time.perf_counter()
    optimize(fp32, "int4", val, out_dir=work / "tf_int4", min_cosine=0.98)
    t_int4 = time.perf_counter() - t0
    models["edgeloop-int8-dynamic"] = work / "tf_dyn" / "model.onnx"
    models["edgeloop-int4"] = work / "tf_int4" / "model.onnx"
    x = test.inputs
    lat = latencies(models, {k: v[:1] for k, v in x.items()}, rounds=5, runs=20, warmup=5)
    rows = _rows(models, fp32, x, test.y, lat)
    for name, path in models.items():
        rows[name]["matmul_weight_bytes"] = matmul_weight_bytes(load_onnx(path))
    base = rows["fp32"]
    return {
        "model": "transformer dim 256, 4 layers, ff 1024, 48 tokens",
        "test_samples": len(test),
        "rows": rows,
        "optimize_seconds": {"int8-dynamic": t_dyn, "int4": t_int4},
        "goals": {
            "dynamic_faster_x": base["p50_ms"] / rows["edgeloop-int8-dynamic"]["p50_ms"],
            "dynamic_faster_x_by_min": base["min_ms"] / rows["edgeloop-int8-dynamic"]["min_ms"],
            "dynamic_cosine_min": rows["edgeloop-int8-dynamic"]["cosine_min"],
            "ort_dynamic_cosine_min": rows["ort-dynamic-default"]["cosine_min"],
            "int4_matmul_smaller_x": base["matmul_weight_bytes"]
            / rows["edgeloop-int4"]["matmul_weight_bytes"],
            "int4_cosine_min": rows["edgeloop-int4"]["cosine_min"],
        },
    }


# --- peers table: edgeloop vs ORT's quantizer defaults vs NNCF, on a trained zoo model and a
# real pretrained transformer -----------------------------------------------------------------

NNCF_PYTHON = Path("/work/venvs/nncf/bin/python")
MINILM_PYTHON = Path("/work/venvs/minilm/bin/python")


def _timed(fn: Any) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _nncf(jobs: list[dict[str, Any]], python: Path, work: Path) -> dict[str, dict[str, Any]]:
    """Run ``_nncf_runner.py`` in NNCF's own venv; out path -> {"seconds"} or {"error"}."""
    import subprocess

    if not python.exists():
        why = f"NNCF venv not found ({python}; see _nncf_runner.py for its packages)"
        return {str(j["out"]): {"error": why} for j in jobs}
    spec = work / "nncf_jobs.json"
    spec.write_text(json.dumps(jobs))
    runner = Path(__file__).parent / "_nncf_runner.py"
    r = subprocess.run(
        [str(python), str(runner), str(spec)], capture_output=True, text=True, timeout=1800
    )
    out: dict[str, dict[str, Any]] = {}
    for j in jobs:
        res = Path(str(j["out"]) + ".json")
        if res.exists():
            out[str(j["out"])] = json.loads(res.read_text())
        else:
            tail = (r.stderr or r.stdout).strip().splitlines()[-1:] or ["no output"]
            out[str(j["out"])] = {"error": f"runner exit {r.returncode}: {tail[0][:200]}"}
    return out


def _peer_rows(
    models: dict[str, Path],
    fp32: Path,
    x: dict[str, np.ndarray],
    y: np.ndarray | None,
    tool_seconds: dict[str, float | None],
    rounds: int,
) -> dict[str, dict[str, Any]]:
    from edgeloop.optimize._measure import retrieval_agreement

    lat = latencies(models, {k: v[:1] for k, v in x.items()}, rounds=rounds, runs=20, warmup=5)
    ref = _outputs(fp32, x)
    rows: dict[str, dict[str, Any]] = {}
    for name, path in models.items():
        out = _outputs(path, x)
        cos = _cosine(ref, out)
        row: dict[str, Any] = {
            "size_bytes": _size(path),
            "cosine_min": float(cos.min()),
            "cosine_mean": float(cos.mean()),
            "tool_seconds": tool_seconds.get(name),
            **lat[name],
        }
        if y is not None:
            row["accuracy"] = float((out.argmax(1) == y).mean())
        else:
            row["retrieval_agreement"] = retrieval_agreement(ref, out)
        row["faster_x"] = lat["fp32"]["p50_ms"] / lat[name]["p50_ms"]
        row["faster_x_by_min"] = lat["fp32"]["min_ms"] / lat[name]["min_ms"]
        rows[name] = row
    return rows


def _ort_peers(
    fp32: Path, cal: dict[str, np.ndarray], work: Path, tag: str, dynamic: bool
) -> tuple[dict[str, Path], dict[str, float | None]]:
    from onnxruntime.quantization import quantize_dynamic, quantize_static

    models = {"ort-static-default": work / f"{tag}_ort_static.onnx"}
    seconds: dict[str, float | None] = {}
    seconds["ort-static-default"] = _timed(
        lambda: quantize_static(str(fp32), str(models["ort-static-default"]), _Reader(cal))  # type: ignore[arg-type]
    )
    if dynamic:
        models["ort-dynamic-default"] = work / f"{tag}_ort_dynamic.onnx"
        seconds["ort-dynamic-default"] = _timed(
            lambda: quantize_dynamic(str(fp32), str(models["ort-dynamic-default"]))
        )
    return models, seconds


def _nncf_peers(
    fp32: Path,
    cal: dict[str, np.ndarray],
    work: Path,
    tag: str,
    python: Path,
    modes: tuple[bool, ...],
) -> tuple[dict[str, Path], dict[str, float | None], dict[str, str]]:
    calib = work / f"{tag}_calib.npz"
    np.savez(calib, **cal)
    names = {False: "nncf-default", True: "nncf-transformer"}
    jobs = [
        {
            "model": str(fp32),
            "calib": str(calib),
            "out": str(work / f"{tag}_{names[t]}.onnx"),
            "transformer": t,
            "subset": len(next(iter(cal.values()))),
        }
        for t in modes
    ]
    res = _nncf(jobs, python, work)
    models: dict[str, Path] = {}
    seconds: dict[str, float | None] = {}
    errors: dict[str, str] = {}
    for t, job in zip(modes, jobs, strict=True):
        r = res[job["out"]]
        if "error" in r:
            errors[names[t]] = r["error"]
        else:
            models[names[t]] = Path(job["out"])
            seconds[names[t]] = r["seconds"]
    return models, seconds, errors


def peers_minilm(work: Path, src: Path, nncf_python: Path, quick: bool) -> dict[str, Any]:
    """all-MiniLM-L6-v2 (from ``export_minilm.py``): calibration on the first sentences, every
    figure on the held-out rest; cosine to fp32 and retrieval agreement. edgeloop's rows are
    its chosen result (``keep_faster``, as ``--recipe auto``) under ``min_cosine=0.98``."""
    from edgeloop.optimize import optimize

    fp32 = src / "minilm.onnx"
    data = dict(np.load(src / "sentences.npz"))
    n_cal = 32 if quick else 128
    cal = {k: v[:n_cal] for k, v in data.items()}
    x = {k: v[n_cal:] for k, v in data.items()}
    models: dict[str, Path] = {"fp32": fp32}
    seconds: dict[str, float | None] = {"fp32": None}
    m, s = _ort_peers(fp32, cal, work, "lm", dynamic=True)
    models.update(m)
    seconds.update(s)
    m, s, errors = _nncf_peers(fp32, cal, work, "lm", nncf_python, (False, True))
    models.update(m)
    seconds.update(s)
    for name, recipe in (("edgeloop-int8", "int8"), ("edgeloop-int8-dynamic", "int8-dynamic")):
        out = work / f"lm_{name}"
        seconds[name] = _timed(
            lambda recipe=recipe, out=out: optimize(
                fp32,
                recipe,
                cal,
                out_dir=out,
                min_cosine=0.98,
                metric="retrieval",
                keep_faster=True,
            )
        )
        models[name] = out / "model.onnx"
    rows = _peer_rows(models, fp32, x, None, seconds, rounds=3 if quick else 8)
    return {
        "model": "all-MiniLM-L6-v2 (22.7 M parameters), 32 tokens",
        "test_samples": len(next(iter(x.values()))),
        "calibration_samples": n_cal,
        "rows": rows,
        "errors": errors,
    }


def peers_mobilenet(work: Path, nncf_python: Path, quick: bool) -> dict[str, Any]:
    """The zoo MobileNet (width 0.25) trained on ``textures`` (the first run trains it and
    caches the checkpoint); accuracy on the test split."""
    from edgeloop.data import load_dataset
    from edgeloop.optimize import optimize

    opts: dict[str, Any] = {"n": 600} if quick else {}
    fp32 = _train("mobilenet", "textures", 1 if quick else 10, work, opts, tag="_textures")
    test = load_dataset("textures", "test", seed=0, **opts)
    val = load_dataset("textures", "val", seed=0, **opts)
    n_cal = 64 if quick else 256
    name = next(iter(test.inputs))
    cal = {name: load_dataset("textures", "train", seed=0, **opts).subset(n_cal).x}
    x = test.inputs
    models: dict[str, Path] = {"fp32": fp32}
    seconds: dict[str, float | None] = {"fp32": None}
    m, s = _ort_peers(fp32, cal, work, "mbt", dynamic=False)
    models.update(m)
    seconds.update(s)
    m, s, errors = _nncf_peers(fp32, cal, work, "mbt", nncf_python, (False,))
    models.update(m)
    seconds.update(s)
    out = work / "mbt_edgeloop-int8"
    seconds["edgeloop-int8"] = _timed(
        lambda: optimize(
            fp32, "int8", val, out_dir=out, max_drop=0.01, calib_samples=n_cal, keep_faster=True
        )
    )
    models["edgeloop-int8"] = out / "model.onnx"
    # the same without bias correction: what folding each layer's mean int8 error into its
    # bias buys (the quantize step's details say whether the corrected model was kept)
    no_bc = {
        "name": "int8-no-bias-correction",
        "passes": [
            "preprocess",
            {
                "quantize": {
                    "calibration": "minmax",
                    "per_channel": "auto",
                    "activation_type": "auto",
                    "reduce_range": "auto",
                    "bias_correction": False,
                }
            },
        ],
    }
    out_nobc = work / "mbt_edgeloop-int8-no-bias-correction"
    seconds["edgeloop-int8 (no bias correction)"] = _timed(
        lambda: optimize(
            fp32, no_bc, val, out_dir=out_nobc, max_drop=0.01, calib_samples=n_cal,
            keep_faster=True,
        )  # fmt: skip
    )
    models["edgeloop-int8 (no bias correction)"] = out_nobc / "model.onnx"
    rows = _peer_rows(models, fp32, x, test.y, seconds, rounds=3 if quick else 8)
    report = json.loads((out / "report.json").read_text())
    q = next((st for st in report["steps"] if st["step"] == "quantize"), {})
    return {
        "bias_correction": q.get("details", {}).get("bias_correction"),
        "model": "zoo mobilenet width 0.25, textures 32x32",
        "test_samples": len(test),
        "calibration_samples": n_cal,
        "rows": rows,
        "errors": errors,
    }


def _print_peers(group: dict[str, Any]) -> None:
    print(f"\npeers: {group['model']} ({group['test_samples']} held-out samples)")
    task = "acc" if "accuracy" in group["rows"]["fp32"] else "retr"
    print(
        f"{'model':<24}{'size MB':>9}{'p50 ms':>9}{'min ms':>9}{'faster':>8}{task:>8}"
        f"{'min cos':>9}{'tool s':>8}"
    )
    for name, r in group["rows"].items():
        metric = r.get("accuracy", r.get("retrieval_agreement"))
        tool = "-" if r["tool_seconds"] is None else f"{r['tool_seconds']:.1f}"
        print(
            f"{name:<24}{r['size_bytes'] / 1e6:>9.2f}{r['p50_ms']:>9.3f}{r['min_ms']:>9.3f}"
            f"{r['faster_x']:>7.2f}x{metric:>8.4f}{r['cosine_min']:>9.5f}{tool:>8}"
        )
    for name, err in group["errors"].items():
        print(f"{name}: not run: {err}")


def _print(group: dict[str, Any]) -> None:
    print(f"\n{group['model']} ({group['test_samples']} test samples)")
    base = group["rows"]["fp32"]
    print(
        f"{'model':<24}{'size':>11}{'smaller':>9}{'p50 ms':>9}{'min ms':>9}{'faster':>8}"
        f"{'acc':>8}{'min cos':>9}"
    )
    for name, r in group["rows"].items():
        print(
            f"{name:<24}{r['size_bytes'] / 1e6:>9.3f}MB"
            f"{base['size_bytes'] / r['size_bytes']:>8.2f}x"
            f"{r['p50_ms']:>9.3f}{r['min_ms']:>9.3f}{base['p50_ms'] / r['p50_ms']:>7.2f}x"
            f"{r['accuracy']:>8.4f}{r['cosine_min']:>9.5f}"
        )
    print("goals:", json.dumps({k: round(v, 4) for k, v in group["goals"].items()}))
    print("optimize took:", group["optimize_seconds"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--workdir", type=Path, default=Path(__file__).parent / "results" / "optimize-work"
    )
    ap.add_argument("--quick", action="store_true", help="few epochs and samples: a smoke run")
    ap.add_argument(
        "--only",
        choices=["mobilenet", "mobilenet-accuracy", "transformer", "peers"],
        default=None,
        help="one group; peers is run only when named (it needs the MiniLM export and NNCF)",
    )
    ap.add_argument(
        "--minilm",
        type=Path,
        default=None,
        help="folder with minilm.onnx and sentences.npz from export_minilm.py (default: "
        "WORKDIR/minilm, exported there with --minilm-python when missing)",
    )
    ap.add_argument("--minilm-python", type=Path, default=MINILM_PYTHON)
    ap.add_argument("--nncf-python", type=Path, default=NNCF_PYTHON)
    args = ap.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    import onnxruntime as ort
    import torch

    torch.set_num_threads(2)
    result: dict[str, Any] = {
        "machine": platform.processor() or platform.machine(),
        "onnxruntime": ort.__version__,
        "threads": 1,
        "batch": 1,
        "quick": args.quick,
    }
    if args.only in (None, "mobilenet"):
        result["mobilenet"] = mobilenet(
            args.workdir,
            1 if args.quick else 2,
            600 if args.quick else 800,
            64 if args.quick else 256,
        )
        _print(result["mobilenet"])
    if args.only in (None, "mobilenet-accuracy"):
        result["mobilenet_accuracy"] = mobilenet_accuracy(
            args.workdir,
            1 if args.quick else 6,
            600 if args.quick else 4000,
            64 if args.quick else 256,
        )
        _print(result["mobilenet_accuracy"])
    if args.only in (None, "transformer"):
        result["transformer"] = transformer(
            args.workdir,
            1 if args.quick else 2,
            800 if args.quick else 1200,
            100 if args.quick else 360,
        )
        _print(result["transformer"])
    if args.only == "peers":
        import os
        import subprocess

        result["load_before"] = os.environ.get("BENCH_LOAD_BEFORE", "")
        minilm = args.minilm or args.workdir / "minilm"
        if not (minilm / "minilm.onnx").exists():
            exporter = Path(__file__).parent / "export_minilm.py"
            cmd = [str(args.minilm_python), str(exporter), "--out", str(minilm)]
            subprocess.run(cmd, check=True)
        t0 = time.perf_counter()
        result["peers_mobilenet"] = peers_mobilenet(args.workdir, args.nncf_python, args.quick)
        _print_peers(result["peers_mobilenet"])
        result["peers_minilm"] = peers_minilm(args.workdir, minilm, args.nncf_python, args.quick)
        _print_peers(result["peers_minilm"])
        result["peers_wall_seconds"] = time.perf_counter() - t0
        result["load_after"] = os.getloadavg()
        print(f"peers took {result['peers_wall_seconds']:.0f} s")
    if not args.quick:
        from edgeloop._io import atomic_write_text

        if args.only and RESULTS.exists():  # the other half from an earlier --only run stays
            earlier = json.loads(RESULTS.read_text())
            result = {**earlier, **result}
        atomic_write_text(RESULTS, json.dumps(result, indent=2) + "\n")
        print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    main()
