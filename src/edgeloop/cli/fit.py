"""``edgeloop fit``: make a model (or the best of a search space) fit a device budget."""

from __future__ import annotations

from pathlib import Path

import typer

__all__ = ["fit"]


def fit(
    model: str = typer.Argument(
        ..., help="A zoo checkpoint, an .onnx model, or a search space (mobilenet, transformer)."
    ),
    target: str = typer.Option(
        ..., "--target", "-t", help="Built-in target (rpi4, ...), a profile .json, or 'local'."
    ),
    max_latency_ms: float | None = typer.Option(None, "--max-latency-ms", help="Latency limit."),
    max_ram_mb: float | None = typer.Option(
        None, "--max-ram-mb", help="Peak memory limit (weights + activations + runtime)."
    ),
    max_size_kb: float | None = typer.Option(None, "--max-size-kb", help="Model file size limit."),
    min_accuracy: float | None = typer.Option(
        None, "--min-accuracy", help="Accuracy floor on held-out data (0-1)."
    ),
    dataset: str | None = typer.Option(
        None, "--dataset", "-d", help="Dataset (default: the checkpoint's own)."
    ),
    out: Path = typer.Option(Path("fit-out"), "--out", "-o", help="Output folder."),
    finetune_epochs: int = typer.Option(
        2, "--finetune-epochs", min=1, help="Fine-tuning epochs after pruning."
    ),
    search_trials: int = typer.Option(
        8, "--search-trials", min=1, help="Trials of a search (SPACE, or the student search)."
    ),
    train_samples: int | None = typer.Option(
        None, "--train-samples", min=2, help="Train on the first N training samples only."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed for splits and training."),
    json_out: bool = typer.Option(False, "--json", help="Print the plan as JSON."),
) -> None:
    """Find the cheapest pipeline that makes MODEL fit a budget on a target, and write it."""
    from edgeloop.cli._console import console, print_json, table
    from edgeloop.plan import FitBudget, fit_model

    budget = FitBudget(max_latency_ms, max_ram_mb, max_size_kb, min_accuracy)

    def note(msg: str) -> None:
        if not json_out:
            console.print(msg, highlight=False)

    result = fit_model(
        model,
        target=target,
        budget=budget,
        out_dir=out,
        dataset=dataset,
        finetune_epochs=finetune_epochs,
        search_trials=search_trials,
        train_samples=train_samples,
        seed=seed,
        progress=note,
    )
    if json_out:
        print_json(result.to_dict())
        return

    def fig(f: dict[str, object] | None, key: str, scale: float, fmt: str) -> str:
        v = (f or {}).get(key)
        return "-" if not isinstance(v, int | float) else format(v / scale, fmt)

    rows = [
        [
            c.name,
            c.status,
            fig(c.measured or c.predicted, "latency_ms", 1, ".3f"),
            fig(c.measured or c.predicted, "peak_memory_bytes", 2**20, ".2f"),
            fig(c.measured or c.predicted, "size_bytes", 1024, ".1f"),
            fig(c.measured, "accuracy", 1, ".4f"),
            "; ".join(c.reasons),
        ]
        for c in result.candidates
    ]
    table(
        f"fit on {result.target}: {budget.describe()}",
        ["candidate", "verdict", "latency ms", "RAM MB", "size KB", "accuracy", "why"],
        rows,
    )
    assert result.chosen is not None  # fit_model raises BudgetError otherwise
    console.print(
        f"chose {result.chosen.name}: {result.model} (card {out / 'model_card.json'}, report "
        f"{result.report}); the cost model spared {result.spared} candidate(s)",
        highlight=False,
    )
