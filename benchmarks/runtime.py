"""PyTorch eager vs ONNX Runtime fp32, batch 1, one thread and all threads, per zoo model.

Each zoo architecture is built at the size its default dataset asks for (weights are freshly
initialised: latency does not depend on their values), plus a MobileNetV1-shaped network at
224x224 (width 1.0, 1000 classes). Every model is exported with ``edgeloop.zoo.export_onnx``
(parity checked), then, for each thread count, PyTorch (``torch.inference_mode``) and
``edgeloop.runtime.Session`` run the same batch-1 input, interleaved run by run so that load
from other processes falls on both alike. The table gives the median and p90 latency of each
and the ratio of the medians (eager / ORT) measured in the same loop.

    python benchmarks/runtime.py [--repeats 200] [--warmup 20] [--models cnn,mobilenet224]

Prints a table and writes ``benchmarks/results/runtime.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results" / "runtime.json"
MODELS = ("cnn", "mobilenet", "cnn1d", "transformer", "autoencoder", "mobilenet224")


def build(name: str) -> tuple[Any, dict[str, Any], dict[str, np.ndarray]]:
    """(module, export meta, one batch-1 input) for a zoo model at its dataset's size."""
    from edgeloop.data import load_dataset
    from edgeloop.zoo import ARCHITECTURES, build_model, input_spec_of, kwargs_for

    if name == "mobilenet224":
        kwargs: dict[str, Any] = {"width": 1.0, "input_size": 224, "num_classes": 1000}
        model = build_model("mobilenet", **kwargs)
        spec = [{"name": "input", "shape": [3, 224, 224], "dtype": "float32"}]
        x = {"input": np.random.default_rng(0).random((1, 3, 224, 224), dtype=np.float32)}
        return model, {"input_spec": spec, "output_names": ["logits"]}, x
    info = ARCHITECTURES[name]
    data = load_dataset(info.default_dataset, "test")
    kwargs = kwargs_for(name, data)
    model = build_model(name, **kwargs)
    spec = input_spec_of(data.input_names, data.shapes(), data.dtypes())
    out = "reconstruction" if info.task == "anomaly" else "logits"
    meta = {"input_spec": spec, "output_names": [out], "arch": name, "arch_kwargs": kwargs}
    return model, meta, data.subset(1).inputs


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def measure(
    model: Any, session: Any, feeds: dict[str, np.ndarray], repeats: int, warmup: int
) -> dict[str, float]:
    import torch

    args = tuple(torch.from_numpy(v) for v in feeds.values())
    checked = session.validate(feeds)
    eager: list[float] = []
    ort_ms: list[float] = []
    with torch.inference_mode():
        for i in range(warmup + repeats):
            t0 = time.perf_counter_ns()
            model(*args)
            t1 = time.perf_counter_ns()
            session.run_unchecked(checked)
            t2 = time.perf_counter_ns()
            if i >= warmup:
                eager.append((t1 - t0) / 1e6)
                ort_ms.append((t2 - t1) / 1e6)

    def p90(xs: list[float]) -> float:
        return float(np.percentile(xs, 90))

    e50, o50 = statistics.median(eager), statistics.median(ort_ms)
    return {
        "eager_p50_ms": e50,
        "eager_p90_ms": p90(eager),
        "ort_p50_ms": o50,
        "ort_p90_ms": p90(ort_ms),
        "eager_over_ort": e50 / o50,
    }


def _macs(macs: int | None) -> str:
    if not macs:
        return "?"
    return f"{macs / 1e6:.1f} M" if macs >= 100_000 else f"{macs / 1e3:.1f} K"


def render(rows: list[dict[str, Any]]) -> str:
    """The results as a Markdown table (what docs/benchmarks.md quotes)."""
    header = ["model", "threads", "MACs", "eager p50 ms", "eager p90", "ORT p50 ms", "ORT p90"]
    lines = ["| " + " | ".join([*header, "eager/ORT"]) + " |", "|" + "---|" * (len(header) + 1)]
    for r in rows:
        cells = [
            r["model"],
            str(r["threads"]),
            _macs(r["macs"]),
            f"{r['eager_p50_ms']:.3f}",
            f"{r['eager_p90_ms']:.3f}",
            f"{r['ort_p50_ms']:.3f}",
            f"{r['ort_p90_ms']:.3f}",
            f"{r['eager_over_ort']:.2f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)

    import onnxruntime as ort
    import torch

    from edgeloop.runtime import Session
    from edgeloop.zoo import export_onnx

    all_threads = os.cpu_count() or 1
    load_before = os.getloadavg()
    print(f"load average before: {load_before}", file=sys.stderr)
    thread_counts = sorted({1, all_threads})
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            model, meta, feeds = build(name)
            model.eval()
            path = Path(tmp) / f"{name}.onnx"
            card = export_onnx(model, path, meta=meta)
            for threads in thread_counts:
                torch.set_num_threads(threads)
                session = Session(path, providers=["CPUExecutionProvider"], threads=threads)
                figures = measure(model, session, feeds, args.repeats, args.warmup)
                rows.append(
                    {
                        "model": name,
                        "threads": threads,
                        "params": card.params,
                        "macs": card.macs,
                        "parity_max_abs_diff": card.extra["export"]["parity"]["max_abs_diff"],
                        **figures,
                    }
                )
                r = rows[-1]
                print(
                    f"{name:<13} {threads:>2} thr  eager {r['eager_p50_ms']:8.3f} ms  "
                    f"ort {r['ort_p50_ms']:8.3f} ms  x{r['eager_over_ort']:.2f}",
                    file=sys.stderr,
                    flush=True,
                )
    print(render(rows))
    result = {
        "command": " ".join(["python benchmarks/runtime.py", *(argv or sys.argv[1:])]),
        "batch": 1,
        "repeats": args.repeats,
        "warmup": args.warmup,
        "load_average_before": list(load_before),
        "machine": {
            "cpu": cpu_model(),
            "cpu_count": all_threads,
            "python": platform.python_version(),
            "torch": torch.__version__,
            "onnxruntime": ort.__version__,
            "load_average_after": list(os.getloadavg()),
        },
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    from edgeloop._io import atomic_write_text

    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
