"""``edgeloop search``: hardware-aware architecture search from the command line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

__all__ = ["search"]


def _limit(value: float | None, flag: str) -> float | None:
    import math

    from edgeloop.errors import InputError

    if value is not None and (not math.isfinite(value) or value <= 0):
        raise InputError(f"{flag} must be a positive number, got {value:g}")
    return value


def search(
    space: str = typer.Argument(
        ..., help="Search space: mobilenet, transformer, or a space .json that narrows one."
    ),
    target: str = typer.Option(
        "local",
        "--target",
        "-t",
        help="Built-in target (rpi4, ...), a profile .json, or 'local' (measure this machine).",
    ),
    dataset: str | None = typer.Option(
        None, "--dataset", "-d", help="Built-in dataset (default: the space's own)."
    ),
    trials: int = typer.Option(20, "--trials", "-n", min=1, help="Trials this worker runs."),
    storage: str | None = typer.Option(
        None,
        "--storage",
        help="Study storage: a journal file (default OUT/study.journal) or postgresql://...",
    ),
    study: str | None = typer.Option(None, "--study", help="Study name (default from the setup)."),
    measure: bool = typer.Option(
        False, "--measure", help="Time candidates on this machine instead of predicting."
    ),
    max_latency_ms: float | None = typer.Option(None, "--max-latency-ms", help="Latency limit."),
    max_memory_mb: float | None = typer.Option(
        None, "--max-memory-mb", help="Peak memory limit (weights + activations)."
    ),
    max_size_kb: float | None = typer.Option(None, "--max-size-kb", help="Model size limit."),
    epochs: int = typer.Option(3, "--epochs", "-e", min=1, help="Epochs of a full trial."),
    short_epochs: int = typer.Option(
        1, "--short-epochs", min=1, help="Epochs before the early-stopping check."
    ),
    train_samples: int | None = typer.Option(
        None, "--train-samples", min=2, help="Train on the first N training samples only."
    ),
    batch_size: int | None = typer.Option(
        None, "--batch-size", min=1, help="Training batch size (default: the architecture's)."
    ),
    worker: int = typer.Option(
        0, "--worker", min=0, help="This worker's index (distinct sampler seeds per worker)."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed for data splits, sampler and training."),
    threads: int | None = typer.Option(None, "--threads", min=1, help="torch threads."),
    out: Path = typer.Option(Path("search-out"), "--out", "-o", help="Output folder."),
    json_out: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Search an architecture space for the models that fit a target's budget (Optuna)."""
    from edgeloop.cli._console import console, print_json, table
    from edgeloop.search import Limits, load_space
    from edgeloop.search import search as run_search

    load_space(space)  # an unknown space fails before anything else
    limits = Limits(
        _limit(max_latency_ms, "--max-latency-ms"),
        _limit(max_memory_mb, "--max-memory-mb"),
        _limit(max_size_kb, "--max-size-kb"),
    )

    def on_trial(t: Any) -> None:
        if json_out:
            return
        acc = "-" if t.accuracy is None else f"{t.accuracy:.3f}"
        console.print(
            f"trial {t.number:>3} {t.state:<8} acc {acc:>5}  {t.latency_ms:8.3f} ms  {t.params}",
            highlight=False,
        )

    result = run_search(
        space,
        out_dir=out,
        target=target,
        dataset=dataset,
        trials=trials,
        limits=limits,
        storage=storage,
        study_name=study,
        epochs=epochs,
        short_epochs=short_epochs,
        train_samples=train_samples,
        batch_size=batch_size,
        measure=measure,
        seed=seed,
        worker=worker,
        threads=threads,
        progress=on_trial,
    )
    if json_out:
        print_json(result.to_dict())
        return
    rows = [
        [
            t.number,
            f"{t.accuracy:.4f}" if t.accuracy is not None else "-",
            f"{t.latency_ms:.3f}",
            f"{t.cost['peak_memory_bytes'] / 2**20:.2f}",
            f"{t.cost['size_bytes'] / 1024:.1f}",
            ", ".join(f"{k}={v}" for k, v in t.params.items()),
        ]
        for t in result.front
    ]
    table(
        f"Pareto front on {result.target} ({len(result.front)} of {len(result.trials)} trials)",
        ["trial", "val acc", "latency ms", "peak MB", "size KB", "architecture"],
        rows,
    )
    states: dict[str, int] = {}
    for t in result.trials:
        states[t.state] = states.get(t.state, 0) + 1
    console.print(", ".join(f"{n} {s}" for s, n in sorted(states.items())), highlight=False)
    if result.chosen is None:
        console.print("no trial met the budget; nothing chosen (see front.png)")
    else:
        acc = result.test_metrics.get("accuracy")
        console.print(
            f"chosen: trial {result.chosen.number}, test accuracy "
            f"{acc if acc is None else f'{acc:.4f}'}, checkpoint {result.checkpoint}",
            highlight=False,
        )
    console.print(f"front: {out / 'front.json'}, {out / 'front.png'}", highlight=False)
