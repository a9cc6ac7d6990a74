"""``edgeloop estimate``: the cost model's prediction for a model on a target."""

from __future__ import annotations

from pathlib import Path

import typer


def _mb(n: int) -> str:
    return f"{n / 2**20:,.2f} MB"


def estimate(
    model: Path = typer.Argument(..., help="The ONNX model."),
    target: str = typer.Option(
        ..., "--target", "-t", help="A built-in target (edgeloop targets) or a profile .json."
    ),
    precision: str | None = typer.Option(
        None, "--precision", help="int8: price a float model as if quantized (default: as is)."
    ),
    shape: list[str] | None = typer.Option(
        None, "--shape", help="Shape of a dynamic input, e.g. ids=1,128 (repeatable)."
    ),
    top: int = typer.Option(
        25, "--top", min=0, help="Kernels to list, slowest first (0: all of them)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the estimate as JSON on stdout."),
) -> None:
    """Predict latency, peak memory and energy of MODEL on a target, kernel by kernel."""
    from edgeloop.analysis import estimate as run_estimate
    from edgeloop.cli._console import console, print_json, table
    from edgeloop.hardware import load_target
    from edgeloop.runtime import parse_shape_overrides

    shapes = parse_shape_overrides(shape or [])
    profile = load_target(target)
    e = run_estimate(model, profile, precision=precision, input_shapes=shapes or None)
    if as_json:
        print_json(e.to_dict())
        return
    ops = sorted(e.per_op, key=lambda o: -o.latency_ms)
    shown = ops if top == 0 else ops[:top]
    table(
        f"{model.name} on {e.target} ({e.precision}; kernels "
        f"{'measured' if e.kernel_source == 'measured' else 'derived from peak GOPS'})",
        ["kernel", "op", "kind", "precision", "MACs", "bytes", "ms", "share"],
        [
            (
                o.name,
                o.op_type,
                o.kind,
                o.precision,
                f"{o.macs:,}",
                f"{o.bytes:,}",
                f"{o.latency_ms:.4f}",
                f"{o.latency_ms / e.latency_ms:.0%}" if e.latency_ms else "-",
            )
            for o in shown
        ],
    )
    if len(shown) < len(ops):
        console.print(f"[dim]{len(ops) - len(shown)} more kernels (--top 0 lists all)[/]")
    energy = "unknown" if e.energy_mj is None else f"{e.energy_mj:.3f} mJ"
    threads = f" on {e.threads} thread(s)" if e.threads else ""
    table(
        "estimate",
        ["", "value"],
        [
            ("latency", f"{e.latency_ms:.3f} ms{threads}"),
            ("peak memory", _mb(e.peak_memory_bytes)),
            (
                "  weights",
                f"{_mb(e.resident_weight_bytes)} resident ({_mb(e.weight_bytes)} stored)",
            ),
            ("  activation arena", _mb(e.activation_bytes)),
            ("  runtime", _mb(e.runtime_bytes)),
            ("energy per inference", energy),
            ("MACs", f"{e.macs:,}" + ("" if e.macs_complete else " (lower bound)")),
        ],
    )
    for note in e.notes:
        console.print(f"[dim]{note}[/]")
