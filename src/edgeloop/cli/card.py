"""``edgeloop card``: a ModelCard for an ONNX model built elsewhere (for ``pack``, registry)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from edgeloop.artifacts import TensorSpec


def card(
    model: Path = typer.Argument(..., help="The ONNX model."),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Card to write (default: MODEL.card.json beside the model)."
    ),
    name: str | None = typer.Option(None, "--name", help="Model name (default: the file's stem)."),
    task: str | None = typer.Option(
        None,
        "--task",
        help="classification or anomaly (default: the dataset's, else classification).",
    ),
    dataset: str | None = typer.Option(
        None,
        "--dataset",
        "-d",
        help="Score it: a built-in dataset (its test split) or a labelled .npz/.csv (all of it).",
    ),
    description: str = typer.Option("", "--description", help="Free text about the model."),
    threads: int | None = typer.Option(None, "--threads", min=1, help="Intra-op threads."),
    as_json: bool = typer.Option(False, "--json", help="Print the card as JSON too."),
) -> None:
    """Describe an ONNX model in a card: inputs, outputs, sha256, params, MACs, metrics."""
    from rich.markup import escape

    from edgeloop.cli._console import console, print_json, table
    from edgeloop.cli.run import graph_reader
    from edgeloop.runtime import card_path, describe_model

    data = None
    if dataset is not None:
        from edgeloop.data import load_dataset

        data = load_dataset(dataset)  # a built-in's test split, a file's every row
    result = describe_model(
        model,
        name=name,
        task=task,
        data=data,
        description=description,
        threads=threads,
        graph_stats=graph_reader(),
    )
    dest = out or card_path(model)
    result.save(dest)
    if as_json:
        print_json(result.to_dict())
        return

    def shapes(specs: tuple[TensorSpec, ...]) -> str:
        dims = (", ".join("?" if d is None else str(d) for d in s.shape) for s in specs)
        text = ", ".join(f"{s.name} {s.dtype} [{d}]" for s, d in zip(specs, dims, strict=True))
        return escape(text)  # table cells are rich markup, and "[batch, 3]" reads as a tag

    rows = [
        ("name", result.name),
        ("sha256", result.sha256),
        ("size", f"{result.size_bytes:,} bytes"),
        ("inputs", shapes(result.inputs)),
        ("outputs", shapes(result.outputs)),
        ("params", "unknown" if result.params is None else f"{result.params:,}"),
        ("MACs", "unknown" if result.macs is None else f"{result.macs:,}"),
        ("task", result.task),
    ]
    if data is not None:
        rows.append(("dataset", f"{result.dataset} ({data.split}, {len(data)} samples)"))
        rows += [(k, f"{v:.4f}") for k, v in result.metrics.items() if k != "samples"]
    table(f"card {dest}", ["", ""], rows)
    console.print(
        f"next: edgeloop pack {model} --card {dest} ...",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
