"""``benchmark``: latency, throughput, memory and size of a model, alone or against another.

Timing runs in a fresh child process so that its peak RSS is the model's and not whatever the
caller loaded before (a test runner, torch, a dataset). ``compare`` interleaves two models in
one child (A, B, A, B ...) so that both see the same thermal state and background load, and
measures each one's memory in a child of its own.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edgeloop.errors import InputError, ModelError
from edgeloop.runtime._evaluate import as_feeds, run_batched, score
from edgeloop.runtime._feeds import synthesize_inputs
from edgeloop.runtime._session import Session

__all__ = ["BenchResult", "GraphFigures", "GraphCounter", "benchmark"]

Source = str | bytes


class GraphFigures(Protocol):
    """What a graph reader reports: ``edgeloop.analysis.GraphStats`` is one."""

    @property
    def params(self) -> int: ...
    @property
    def macs(self) -> int: ...
    @property
    def size_bytes(self) -> int: ...


class GraphCounter(Protocol):
    """Reads a model's graph: ``edgeloop.analysis.graph_stats`` is one (build layer, onnx)."""

    def __call__(
        self, model: Source, *, input_shapes: Mapping[str, Sequence[int]] | None = ...
    ) -> GraphFigures: ...


@dataclass
class BenchResult:
    """One model's figures; ``compare`` holds the other model's and ``ratios`` other / this."""

    model: str
    sha256: str
    size_bytes: int  # the model file plus its external data files
    params: int | None
    macs: int | None  # per sample (batch 1), counted from the graph
    providers: list[str]
    threads: int | None
    batch: int
    input_shapes: dict[str, list[int]]
    iterations: int
    latency_ms: dict[str, float]  # p50, p90, p99, mean, min, max, std
    throughput_per_s: float  # samples per second at the p50 latency
    peak_rss_mb: float | None  # the measuring process's peak resident memory
    model_rss_mb: float | None  # peak minus the process's peak before the model was loaded
    provider_fallback: str | None = None  # why an accelerator was not used, if one was dropped
    metrics: dict[str, float] = field(default_factory=dict)
    compare: BenchResult | None = None
    ratios: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["compare"] = self.compare.to_dict() if self.compare else None
        return d


def _peak_rss_mb() -> float | None:
    """This process's peak resident memory in MiB.

    On Linux, VmHWM from /proc: getrusage's ru_maxrss survives exec, so a child started by a
    big parent would report the parent's peak.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**10  # kB
    except (OSError, ValueError, IndexError):
        pass
    try:
        import resource
    except ImportError:  # Windows
        import psutil

        peak = getattr(psutil.Process().memory_info(), "peak_wset", None)
        return None if peak is None else peak / 2**20
    ru = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return ru / 2**20 if sys.platform == "darwin" else ru / 2**10  # bytes on macOS, KiB elsewhere


def _latency_stats(samples_ns: Sequence[int]) -> dict[str, float]:
    ms = np.asarray(samples_ns, dtype=np.float64) / 1e6
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return {
        "p50": float(p50),
        "p90": float(p90),
        "p99": float(p99),
        "mean": float(ms.mean()),
        "min": float(ms.min()),
        "max": float(ms.max()),
        "std": float(ms.std()),
    }


def _measure(
    sources: list[Source],
    feeds: list[dict[str, np.ndarray]],
    threads: int | None,
    providers: list[str] | None,
    warmup: int,
    iterations: int | None,
    min_seconds: float,
) -> dict[str, Any]:
    """Runs in the child: load each model, warm up, then time them round-robin."""
    before = _peak_rss_mb()
    sessions = [Session(s, threads=threads, providers=providers) for s in sources]
    checked = [s.validate(f) for s, f in zip(sessions, feeds, strict=True)]
    start = time.perf_counter()
    for n in range(warmup):  # a slow model warms up for at most half the timed budget
        if n and time.perf_counter() - start >= min_seconds / 2 and iterations is None:
            break
        for s, f in zip(sessions, checked, strict=True):
            s.run_unchecked(f)
    times: list[list[int]] = [[] for _ in sessions]
    start = time.perf_counter()
    i = 0
    while True:
        for k, (s, f) in enumerate(zip(sessions, checked, strict=True)):
            t0 = time.perf_counter_ns()
            s.run_unchecked(f)
            times[k].append(time.perf_counter_ns() - t0)
        i += 1
        if iterations is not None:
            if i >= iterations:
                break
            continue
        elapsed = time.perf_counter() - start
        # at least 10 runs, or 3 when each takes so long that 10 would triple the budget
        if elapsed >= min_seconds and (i >= 10 or elapsed >= 3 * min_seconds and i >= 3):
            break
    peak = _peak_rss_mb()
    return {
        "times": times,
        "providers": [s.providers for s in sessions],
        "peak_rss_mb": peak,
        "model_rss_mb": None if peak is None or before is None else max(peak - before, 0.0),
    }


def _in_child(*args: Any) -> dict[str, Any]:
    """``_measure`` in a fresh interpreter (see ``_child``), its exceptions re-raised here."""
    import edgeloop

    env = dict(os.environ)
    src = str(Path(edgeloop.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    proc = subprocess.run(
        [sys.executable, "-m", "edgeloop.runtime._child"],
        input=pickle.dumps((args, {})),
        capture_output=True,
        env=env,
        check=False,
    )
    try:
        status, value = pickle.loads(proc.stdout)
    except Exception as e:
        tail = proc.stderr.decode(errors="replace").strip().splitlines()[-3:]
        raise ModelError(
            f"the benchmark process failed (exit {proc.returncode}): {' | '.join(tail)}"
        ) from e
    if status == "error":
        raise value
    result: dict[str, Any] = value
    return result


def _graph_figures(
    source: Source,
    session: Session,
    feeds: Mapping[str, np.ndarray],
    graph_stats: GraphCounter | None,
) -> tuple[int | None, int | None, int | None]:
    """(params, MACs per sample, size with external data) from ``graph_stats``, else Nones."""
    if graph_stats is None:
        return None, None, None
    shapes = {}
    for spec in session.inputs:
        shape = list(feeds[spec.name].shape)
        if shape and not isinstance(spec.shape[0], int):
            shape[0] = 1
        shapes[spec.name] = shape
    stats = graph_stats(source, input_shapes=shapes)
    return stats.params, stats.macs, stats.size_bytes


def _data_parts(data: Any) -> tuple[Any, np.ndarray | None, str | None]:
    """(x, y, task) from a Dataset-like object, an (x, y) pair, a mapping or an array."""
    if hasattr(data, "x"):
        return data.x, getattr(data, "y", None), getattr(data, "task", None)
    if isinstance(data, tuple) and len(data) == 2:
        return data[0], data[1], None
    return data, None, None


def _take(x: Any, session: Session, batch: int) -> dict[str, np.ndarray]:
    """The first ``batch`` rows of the data (repeated when there are fewer), as named feeds."""
    feeds = as_feeds(session, x)
    out = {}
    for k, v in feeds.items():
        reps = -(-batch // max(v.shape[0], 1))
        out[k] = np.concatenate([v] * reps, axis=0)[:batch] if reps > 1 else v[:batch]
    return out


def _prepare(
    model: str | Path | bytes,
    threads: int | None,
    providers: list[str] | None,
    batch: int,
    data: Any,
    shapes: Mapping[str, Sequence[int]] | None,
) -> tuple[Source, Session, dict[str, np.ndarray]]:
    source: Source = bytes(model) if isinstance(model, bytes | bytearray) else str(model)
    session = Session(source, threads=threads, providers=providers)
    if data is None:
        feeds = synthesize_inputs(session.inputs, batch=batch, overrides=shapes)
    else:
        feeds = _take(_data_parts(data)[0], session, batch)
    session.validate(feeds)
    return source, session, feeds


def _result(
    source: Source,
    session: Session,
    feeds: dict[str, np.ndarray],
    times: list[int],
    providers: list[str],
    rss: tuple[float | None, float | None],
    threads: int | None,
    batch: int,
    graph_stats: GraphCounter | None,
) -> BenchResult:
    params, macs, size = _graph_figures(source, session, feeds, graph_stats)
    lat = _latency_stats(times)
    if size is None:  # without a graph reader, external weight files are unknown: the file alone
        size = len(source) if isinstance(source, bytes) else Path(source).stat().st_size
    return BenchResult(
        model=str(source) if isinstance(source, str) else "<bytes>",
        sha256=session.model_sha256,
        size_bytes=size,
        params=params,
        macs=macs,
        providers=providers,  # what the measuring process ran on
        threads=threads,
        batch=batch,
        input_shapes={k: list(v.shape) for k, v in feeds.items()},
        iterations=len(times),
        latency_ms=lat,
        throughput_per_s=batch * 1000.0 / lat["p50"] if lat["p50"] > 0 else float("inf"),
        peak_rss_mb=rss[0],
        model_rss_mb=rss[1],
        provider_fallback=session.provider_fallback,
    )


def _ratios(a: BenchResult, b: BenchResult) -> dict[str, float]:
    pairs = {
        "latency_p50": (a.latency_ms["p50"], b.latency_ms["p50"]),
        "latency_p99": (a.latency_ms["p99"], b.latency_ms["p99"]),
        "latency_mean": (a.latency_ms["mean"], b.latency_ms["mean"]),
        "throughput": (a.throughput_per_s, b.throughput_per_s),
        "size": (a.size_bytes, b.size_bytes),
        "params": (a.params, b.params),
        "macs": (a.macs, b.macs),
        "model_rss": (a.model_rss_mb, b.model_rss_mb),
    }
    return {k: float(y) / float(x) for k, (x, y) in pairs.items() if x and y is not None}


def benchmark(
    model: str | Path | bytes,
    *,
    threads: int | None = None,
    batch: int = 1,
    data: Any = None,
    shapes: Mapping[str, Sequence[int]] | None = None,
    warmup: int = 5,
    iterations: int | None = None,
    min_seconds: float = 2.0,
    compare: str | Path | bytes | None = None,
    providers: Sequence[str] | None = None,
    task: str | None = None,
    isolate: bool = True,
    graph_stats: GraphCounter | None = None,
) -> BenchResult:
    """Measure a model on ONNX Runtime (and ``compare`` it with another, interleaved).

    Inputs are the first ``batch`` rows of ``data`` (a Dataset, an ``(x, y)`` pair, or arrays)
    or random tensors shaped by the model's inputs, with dynamic dimensions from ``shapes``
    (``{"ids": (1, 64)}``), else ``batch`` for the leading one and 32 for the others. Runs
    ``iterations`` times, or until ``min_seconds`` have passed. When ``data`` has labels, the
    task metric over all of it is added to ``metrics``. ``isolate`` runs the timing in a fresh
    process so peak memory is the model's own. ``graph_stats`` (``edgeloop.analysis.graph_stats``
    where onnx is installed; the runtime itself reads no graphs) adds params, MACs and the size
    with external data files.
    """
    if batch < 1 or warmup < 0 or (iterations is not None and iterations < 1):
        raise InputError(
            f"batch and iterations must be positive and warmup non-negative, got batch={batch}, "
            f"iterations={iterations}, warmup={warmup}"
        )
    prov = list(providers) if providers is not None else None
    a_src, a_sess, a_feeds = _prepare(model, threads, prov, batch, data, shapes)
    runs: list[tuple[Source, Session, dict[str, np.ndarray]]] = [(a_src, a_sess, a_feeds)]
    if compare is not None:
        runs.append(_prepare(compare, threads, prov, batch, data, shapes))
    measure = _in_child if isolate else _measure
    args = (threads, prov, warmup, iterations, min_seconds)
    timed = measure([r[0] for r in runs], [r[2] for r in runs], *args)
    rss: list[tuple[float | None, float | None]]
    if not isolate:  # this process's peak memory says nothing about the model
        rss = [(None, None) for _ in runs]
    elif len(runs) == 1:
        rss = [(timed["peak_rss_mb"], timed["model_rss_mb"])]
    else:  # the memory of each model alone, in a process of its own
        alone = [measure([r[0]], [r[2]], threads, prov, 1, 1, 0.0) for r in runs]
        rss = [(m["peak_rss_mb"], m["model_rss_mb"]) for m in alone]
    results = [
        _result(
            src,
            sess,
            feeds,
            timed["times"][i],
            timed["providers"][i],
            rss[i],
            threads,
            batch,
            graph_stats,
        )
        for i, (src, sess, feeds) in enumerate(runs)
    ]
    x, y, data_task = _data_parts(data) if data is not None else (None, None, None)
    if y is not None:
        for res, (_, sess, _) in zip(results, runs, strict=True):
            out = run_batched(sess, x)[sess.output_names[0]]
            res.metrics = score(task or data_task or "classification", y, out, x)
    first = results[0]
    if len(results) == 2:
        first.compare = results[1]
        first.ratios = _ratios(first, results[1])
    return first
