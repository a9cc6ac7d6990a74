"""``edgeloop run``, ``bench`` and ``evaluate``: a model on ONNX Runtime (no torch needed)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    import numpy as np

    from edgeloop.runtime import BenchResult, Session

THREADS = typer.Option(None, "--threads", min=1, help="Intra-op threads (default: ORT's choice).")
PROVIDERS = typer.Option(
    None, "--provider", help="Execution provider, e.g. cuda or openvino (repeatable; CPU is last)."
)


def _warn_fallback(reason: str | None) -> None:
    if reason:
        from edgeloop.cli._console import err_console

        err_console.print(f"[yellow]warning:[/] running on the CPU: {reason}", markup=True)


def _read_npz(path: Path, session: Session) -> dict[str, np.ndarray]:
    """Arrays by input name (or ``x`` for a single-input model) from a user's .npz."""
    import zipfile

    import numpy as np

    from edgeloop.errors import FileError, ModelInputError

    if path.is_dir():
        raise FileError(f"input {str(path)!r} is a directory, expected a .npz file")
    if not path.exists():
        raise FileError(f"input {str(path)!r} does not exist")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise FileError(f"{str(path)!r} is not a readable .npz file: {e}") from e
    names = session.input_names
    if len(names) == 1:
        for key in (names[0], "x"):
            if key in arrays:
                return {names[0]: arrays[key]}
        if len(arrays) == 1:
            return {names[0]: next(iter(arrays.values()))}
    missing = [n for n in names if n not in arrays]
    if missing:
        hint = " (or 'x')" if len(names) == 1 else ""
        raise ModelInputError(
            f"{str(path)!r} has no array for input {missing[0]!r}{hint}; it has: "
            f"{', '.join(arrays) or 'nothing'}"
        )
    return {n: arrays[n] for n in names}


def run(
    model: Path = typer.Argument(..., help="The ONNX model."),
    input: Path = typer.Option(
        ..., "--input", "-i", help=".npz with one array per input name (or 'x')."
    ),
    out: Path = typer.Option(..., "--out", "-o", help=".npz to write, one array per output."),
    batch_size: int = typer.Option(256, "--batch-size", min=1, help="Rows per inference."),
    threads: int | None = THREADS,
    provider: list[str] | None = PROVIDERS,
) -> None:
    """Run a model over the rows of an .npz and write its outputs to another .npz."""
    import time

    import numpy as np

    from edgeloop._io import atomic_path
    from edgeloop.cli._console import console
    from edgeloop.runtime import Session, run_batched

    session = Session(model, threads=threads, providers=provider or None)
    _warn_fallback(session.provider_fallback)
    feeds = _read_npz(input, session)
    t0 = time.perf_counter()
    outputs = run_batched(session, feeds, batch_size)
    elapsed_ms = (time.perf_counter() - t0) * 1e3
    with atomic_path(out) as tmp, open(tmp, "wb") as f:
        np.savez(f, **outputs)  # type: ignore[arg-type]
    shapes = ", ".join(f"{k} {tuple(v.shape)} {v.dtype}" for k, v in outputs.items())
    console.print(
        f"wrote [bold]{out}[/]: {shapes} ({elapsed_ms:.1f} ms on {', '.join(session.providers)})"
    )


def graph_reader() -> Any:
    """``edgeloop.analysis.graph_stats`` where onnx is installed (params, MACs), else None: a
    device without onnx still benchmarks, without those figures."""
    import importlib.util

    if importlib.util.find_spec("onnx") is None:
        return None
    from edgeloop.analysis import graph_stats

    return graph_stats


def _dataset(data: str | None, dataset: str | None = None) -> Any:
    """``dataset``: a built-in dataset's test split, or a whole file; ``data``: a name or file.

    A file given as ``--dataset`` is scored whole, as with ``--data`` (its "test split" would
    be a silent 20 % of it).
    """
    from edgeloop.data import load_dataset
    from edgeloop.errors import InputError

    if data and dataset:
        raise InputError("give either --data FILE or --dataset NAME, not both")
    if dataset:
        return load_dataset(dataset)  # test split of a built-in, all of a file
    if data:
        return load_dataset(data)
    return None


def _ms(v: float) -> str:
    return f"{v:.3f}" if v < 10 else f"{v:.1f}"


def _bench_rows(r: BenchResult) -> list[tuple[Any, ...]]:
    cols: list[BenchResult] = [r] + ([r.compare] if r.compare else [])

    def row(label: str, get: Any, ratio: str | None = None) -> tuple[Any, ...]:
        values = [get(c) for c in cols]
        cells: list[Any] = [label, *values]
        if r.compare is not None:
            q = r.ratios.get(ratio or "")
            cells.append(f"{q:.2f}x" if q is not None else "")
        return tuple(cells)

    def mb(v: float | None) -> str:
        return "unknown" if v is None else f"{v:.1f}"

    rows = [
        row("size (KB)", lambda c: f"{c.size_bytes / 1024:,.1f}", "size"),
        row("params", lambda c: "unknown" if c.params is None else f"{c.params:,}", "params"),
        row("MACs / sample", lambda c: "unknown" if c.macs is None else f"{c.macs:,}", "macs"),
        row("latency p50 (ms)", lambda c: _ms(c.latency_ms["p50"]), "latency_p50"),
        row("latency p90 (ms)", lambda c: _ms(c.latency_ms["p90"])),
        row("latency p99 (ms)", lambda c: _ms(c.latency_ms["p99"]), "latency_p99"),
        row("latency mean (ms)", lambda c: _ms(c.latency_ms["mean"]), "latency_mean"),
        row("throughput (samples/s)", lambda c: f"{c.throughput_per_s:,.1f}", "throughput"),
        row("peak RSS (MB)", lambda c: mb(c.peak_rss_mb)),
        row("model RSS (MB)", lambda c: mb(c.model_rss_mb), "model_rss"),
        row("iterations", lambda c: c.iterations),
    ]
    for key in sorted(set(r.metrics) | (set(r.compare.metrics) if r.compare else set())):
        if key != "samples":
            rows.append(row(key, lambda c, k=key: f"{c.metrics[k]:.4f}" if k in c.metrics else ""))
    return rows


def bench(
    model: Path = typer.Argument(..., help="The ONNX model."),
    threads: int | None = THREADS,
    batch: int = typer.Option(1, "--batch", min=1, help="Batch size of each inference."),
    data: str | None = typer.Option(
        None, "--data", help="Dataset name or file: inputs from it and the task metric."
    ),
    compare: Path | None = typer.Option(
        None, "--compare", help="Another model, run interleaved with this one."
    ),
    shape: list[str] | None = typer.Option(
        None, "--shape", help="Shape of a dynamic input, e.g. ids=1,64 (repeatable)."
    ),
    iterations: int | None = typer.Option(
        None, "--iterations", min=1, help="Timed runs (default: as many as --seconds allows)."
    ),
    seconds: float = typer.Option(2.0, "--seconds", min=0.0, help="Minimum timed seconds."),
    warmup: int = typer.Option(5, "--warmup", min=0, help="Untimed runs first."),
    provider: list[str] | None = PROVIDERS,
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON on stdout."),
) -> None:
    """Latency (p50/p90/p99), throughput, memory, size, params and MACs of a model."""
    from edgeloop.cli._console import console, err_console, print_json, table
    from edgeloop.runtime import benchmark, parse_shape_overrides

    shapes = parse_shape_overrides(shape or [])
    ds = _dataset(data)
    with err_console.status(f"benchmarking {model.name} ..."):
        result = benchmark(
            model,
            threads=threads,
            batch=batch,
            data=ds,
            shapes=shapes,
            warmup=warmup,
            iterations=iterations,
            min_seconds=seconds,
            compare=compare,
            providers=provider or None,
            graph_stats=graph_reader(),
        )
    if as_json:
        print_json(result.to_dict())
        return
    _warn_fallback(result.provider_fallback)
    cols = ["", model.name]
    if compare is not None:
        cols += [f"{compare.name} (B)", "B / A"]
        cols[1] += " (A)"
    inputs = ", ".join(f"{k}{tuple(v)}" for k, v in result.input_shapes.items())
    console.print(
        f"batch {batch}, threads {threads or 'default'}, {', '.join(result.providers)}; "
        f"inputs {inputs}"
    )
    table(None, cols, _bench_rows(result))
    if compare is not None:
        console.print("[dim]B / A < 1 means B is smaller or faster (higher for throughput)[/]")


def evaluate(
    model: Path = typer.Argument(..., help="The ONNX model."),
    dataset: str | None = typer.Option(None, "--dataset", help="A built-in dataset (test split)."),
    data: str | None = typer.Option(None, "--data", help="A labelled .npz or .csv file."),
    task: str | None = typer.Option(
        None, "--task", help="classification or anomaly (default: the dataset's task)."
    ),
    batch_size: int = typer.Option(256, "--batch-size", min=1, help="Rows per inference."),
    threads: int | None = THREADS,
    as_json: bool = typer.Option(False, "--json", help="Print the metrics as JSON on stdout."),
) -> None:
    """Score a model on labelled data: accuracy, macro-F1, ROC AUC as the task fits."""
    from edgeloop.cli._console import print_json, table
    from edgeloop.errors import InputError
    from edgeloop.runtime import Session
    from edgeloop.runtime import evaluate as evaluate_model

    if not (data or dataset):
        raise InputError("give --dataset NAME (a built-in dataset) or --data FILE (.npz, .csv)")
    session = Session(model, threads=threads)
    ds = _dataset(data, dataset)
    chosen = task or ds.task
    scores = evaluate_model(session, ds.x, ds.y, chosen, batch_size=batch_size)
    if as_json:
        out = {"model": str(model), "dataset": ds.name, "split": ds.split, "task": chosen}
        print_json({**out, "metrics": scores})
        return
    rows = [(k, f"{int(v)}" if k == "samples" else f"{v:.4f}") for k, v in scores.items()]
    what = "the whole file" if ds.split == "all" else f"its {ds.split} split"
    title = f"{model.name} on {ds.name}, {what}: {len(ds)} samples ({chosen})"
    table(title, ["metric", "value"], rows)
