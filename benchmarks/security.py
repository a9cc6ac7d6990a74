"""What security costs at load time: verify + decrypt + self-test + load vs plain onnxruntime.

For a ~10 MB and a ~90 MB model (chains of MatMul with large initializers, built with
onnx.helper) this packs a bundle, then loads each way in a fresh child process (so peak RSS is
clean), several times, interleaved. It reports the median wall time (the goal is judged on it),
the best-of wall time, and the median CPU time of the whole process (all threads): on a shared,
loaded machine wall time mostly measures waiting for a core, and CPU time is the steadier cost.

* ``plain``:  read the .onnx file, ``onnxruntime.InferenceSession(bytes)``
* ``secure``: ``edgeloop.bundle.session_from_bundle(path, trust, device_key)``: mmap, verify the
  signature and payload sha256, decrypt AES-256-GCM chunks in memory, build the
  ``edgeloop.runtime.Session`` and run the signed self-test.

Goals (issue 5): security overhead <= 25% of the load time for the 90 MB model; peak memory of
the secure load <= its plain load's peak + model size + 64 MiB (the extra a secure load may hold;
a plain onnxruntime load alone already peaks far above the model size).

    python benchmarks/security.py [--repeats 5] [--sizes 10,90]

Prints a table and writes ``benchmarks/results/security.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results" / "security.json"
MiB = 1 << 20


def build_model(size_mb: float, layers: int = 10) -> bytes:
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    d = int((size_mb * 1e6 / 4 / layers) ** 0.5)
    rng = np.random.default_rng(0)
    nodes, inits, prev = [], [], "x"
    for i in range(layers):
        w = (rng.standard_normal((d, d), dtype=np.float32) / np.sqrt(d)).astype(np.float32)
        inits.append(numpy_helper.from_array(w, f"W{i}"))
        nodes.append(helper.make_node("MatMul", [prev, f"W{i}"], [f"h{i}"]))
        prev = f"h{i}"
    graph = helper.make_graph(
        nodes,
        "chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, d])],
        [helper.make_tensor_value_info(prev, TensorProto.FLOAT, [1, d])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return bytes(model.SerializeToString())


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def child(mode: str, work: Path) -> None:
    """Runs in a fresh process: load once, print JSON with seconds and memory."""
    import onnxruntime as ort

    from edgeloop.bundle import load_encryption_key, load_trust, session_from_bundle
    from edgeloop.runtime import Session  # noqa: F401 - import cost is not load cost

    trust = load_trust(work / "release.pub.pem")
    key = load_encryption_key(work / "device.pem")
    base = _rss()
    c0 = time.process_time()
    t0 = time.perf_counter()
    if mode == "plain":
        data = (work / "model.onnx").read_bytes()
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        sess: Any = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
    else:
        sess = session_from_bundle(
            work / "model.elb", trust, key, providers=["CPUExecutionProvider"]
        )
    seconds = time.perf_counter() - t0
    cpu = time.process_time() - c0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    out = {
        "seconds": seconds,
        "cpu_s": cpu,
        "base_rss": base,
        "peak_rss": peak,
        "ok": sess is not None,
    }
    print(json.dumps(out))


def _run_child(mode: str, work: Path) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", mode, str(work)],
        capture_output=True,
        text=True,
        check=True,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def prepare(size_mb: float, work: Path) -> int:
    from edgeloop.artifacts import ModelCard
    from edgeloop.bundle import (
        generate_encryption_key,
        generate_signing_key,
        pack,
        save_private_key,
        save_public_key,
    )

    model = build_model(size_mb)
    sk, dk = generate_signing_key(), generate_encryption_key()
    bundle = pack(
        model, ModelCard(name=f"chain{int(size_mb)}", sha256=""), 1, sk, [dk.public_key()]
    )
    (work / "model.onnx").write_bytes(model)
    (work / "model.elb").write_bytes(bundle)
    save_public_key(work / "release.pub.pem", sk)
    save_private_key(work / "device.pem", dk)
    for name in ("model.onnx", "model.elb"):  # warm the page cache for both alike
        (work / name).read_bytes()
    return len(model)


def measure(size_mb: float, repeats: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="edgeloop-secbench-") as tmp:
        work = Path(tmp)
        size = prepare(size_mb, work)
        runs: dict[str, list[dict[str, Any]]] = {"plain": [], "secure": []}
        for _ in range(repeats):  # interleaved, so drift in machine load hits both alike
            for mode in runs:
                runs[mode].append(_run_child(mode, work))
    med = {m: statistics.median(r["seconds"] for r in rs) for m, rs in runs.items()}
    best = {m: min(r["seconds"] for r in rs) for m, rs in runs.items()}
    cpu = {m: statistics.median(r["cpu_s"] for r in rs) for m, rs in runs.items()}
    peak = {
        m: statistics.median(r["peak_rss"] - r["base_rss"] for r in rs) for m, rs in runs.items()
    }
    overhead = (med["secure"] - med["plain"]) / med["plain"]
    extra = peak["secure"] - peak["plain"]
    return {
        "model_bytes": size,
        "plain_s": med["plain"],
        "secure_s": med["secure"],
        "overhead": overhead,
        "plain_best_s": best["plain"],
        "secure_best_s": best["secure"],
        "overhead_best": (best["secure"] - best["plain"]) / best["plain"],
        "plain_cpu_s": cpu["plain"],
        "secure_cpu_s": cpu["secure"],
        "overhead_cpu": (cpu["secure"] - cpu["plain"]) / cpu["plain"],
        "plain_peak_mib": peak["plain"] / MiB,
        "secure_peak_mib": peak["secure"] / MiB,
        "extra_peak_mib": extra / MiB,
        "memory_goal_mib": (size + 64 * MiB) / MiB,
        "memory_ok": extra <= size + 64 * MiB,
        "runs": runs,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--sizes", default="10,90", help="model sizes in MB, comma-separated")
    ap.add_argument("--out", type=Path, default=RESULTS, help="where to write the JSON")
    ap.add_argument("--child", nargs=2, metavar=("MODE", "DIR"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child[0], Path(args.child[1]))
        return
    import onnxruntime

    before_load = list(os.getloadavg())
    results = {f"{s}MB": measure(float(s), args.repeats) for s in args.sizes.split(",")}
    big = results.get("90MB")
    report = {
        "benchmark": "security",
        "command": " ".join(["python", "benchmarks/security.py", *sys.argv[1:]]),
        "repeats": args.repeats,
        "machine": {
            "python": platform.python_version(),
            "onnxruntime": onnxruntime.__version__,
            "cpu": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
            "loadavg_before": before_load,
            "loadavg_after": list(os.getloadavg()),
        },
        "results": results,
        "goals": {
            "overhead_90MB_le_25pct": None if big is None else big["overhead"] <= 0.25,
            "memory_le_model_plus_64MiB": all(r["memory_ok"] for r in results.values()),
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    cols = ["model", "plain s", "secure s", "overhead", "best-of overhead", "CPU overhead"]
    cols += ["plain peak", "secure peak", "extra peak"]
    print(" | ".join(cols))
    for name, r in results.items():
        print(
            f"{name} | {r['plain_s']:.3f} | {r['secure_s']:.3f} | {r['overhead']:.1%} | "
            f"{r['overhead_best']:.1%} | {r['overhead_cpu']:.1%} | "
            f"{r['plain_peak_mib']:.0f} MiB | {r['secure_peak_mib']:.0f} MiB | "
            f"{r['extra_peak_mib']:.0f} MiB"
        )
    print(f"goals: {report['goals']}  ->  {args.out}")


if __name__ == "__main__":
    main()
