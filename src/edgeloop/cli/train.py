"""``edgeloop train`` and ``edgeloop export``: the model zoo from the command line."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import typer

from edgeloop.cli.compress import augment_option
from edgeloop.errors import InputError

__all__ = ["export", "parse_input_shape", "train"]


def parse_input_shape(text: str) -> list[list[int]]:
    """``"1,3,32,32"`` (or ``1x3x32x32``); several inputs separated by ``;``."""
    shapes: list[list[int]] = []
    for part in text.split(";"):
        dims = [d for d in re.split(r"[,x\s]+", part.strip()) if d]
        try:
            shape = [int(d) for d in dims]
        except ValueError:
            shape = []
        if not shape or min(shape) < 1:
            raise InputError(
                f"input shape {part.strip()!r} is not a list of positive sizes like 1,3,32,32"
            )
        shapes.append(shape)
    return shapes


def _width(arch: str, width: float | None) -> dict[str, Any]:
    if width is None:
        return {}
    if width <= 0:
        raise InputError(f"--width must be positive, got {width:g}")
    if arch in ("cnn", "cnn1d"):
        if not float(width).is_integer():
            raise InputError(f"--width for {arch!r} is a channel count, got {width:g}")
        return {"width": int(width)}
    return {"width": float(width)}


def train(
    arch: str = typer.Argument(
        ..., help="Architecture: cnn, mobilenet, cnn1d, transformer, autoencoder."
    ),
    dataset: str | None = typer.Option(
        None,
        "--dataset",
        "-d",
        help="Built-in dataset or a .npz/.csv/image folder (default: the arch's own).",
    ),
    epochs: int | None = typer.Option(
        None, "--epochs", "-e", min=1, help="Passes over the training split."
    ),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Checkpoint to write (default: ARCH.pt)."
    ),
    lr: float | None = typer.Option(None, "--lr", help="Peak learning rate."),
    batch_size: int | None = typer.Option(None, "--batch-size", min=1, help="Training batch size."),
    seed: int = typer.Option(0, "--seed", help="Seed for the split, initialisation and shuffling."),
    width: float | None = typer.Option(
        None, "--width", help="Width multiplier (mobilenet) or channels."
    ),
    threads: int | None = typer.Option(None, "--threads", min=1, help="torch threads."),
    augment: str | None = augment_option(),
    json_out: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Train a zoo model on a dataset, report its test metric, and save a checkpoint."""
    from edgeloop.cli._console import console, print_json, progress
    from edgeloop.cli.compress import check_augment
    from edgeloop.data import load_dataset
    from edgeloop.zoo import arch_info
    from edgeloop.zoo import train as train_model

    info = arch_info(arch)  # unknown names fail before the progress bar starts
    check_augment(augment)
    load_dataset(dataset or info.default_dataset, "train", seed=seed)  # cached for training
    dest = out or Path(f"{arch}.pt")
    with progress() as bar:
        task = bar.add_task(f"training {arch}", total=epochs or info.epochs, status="")

        def on_epoch(epoch: int, total: int, stats: Any) -> None:
            shown = [f"loss {stats['train_loss']:.4f}"]
            for key in ("val_accuracy", "val_loss"):
                if key in stats:
                    shown.append(f"{key.replace('_', ' ')} {stats[key]:.4f}")
                    break
            bar.update(task, completed=epoch, total=total, status=" · ".join(shown))

        result = train_model(
            arch,
            dataset,
            epochs,
            lr=lr,
            batch_size=batch_size,
            seed=seed,
            out=dest,
            progress=on_epoch,
            threads=threads,
            augment=augment,
            **_width(arch, width),
        )
    if json_out:
        print_json(
            {
                "arch": arch,
                "arch_kwargs": result.arch_kwargs,
                "dataset": result.dataset,
                "metrics": result.metrics,
                "epochs": result.fit.epochs,
                "seconds": round(result.fit.seconds, 3),
                "checkpoint": str(dest),
            }
        )
        return
    console.print(
        f"test {result.metric_name} {result.metric:.4f} on {result.dataset} "
        f"({result.fit.epochs} epochs, {result.fit.seconds:.1f} s) · saved {dest}"
    )


def export(
    checkpoint: Path = typer.Argument(
        ..., help="A checkpoint from `edgeloop train`, or a module saved with torch.save."
    ),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="ONNX file to write (default: CHECKPOINT.onnx)."
    ),
    opset: int = typer.Option(17, "--opset", help="ONNX opset (17 or newer)."),
    input_shape: str | None = typer.Option(
        None,
        "--input-shape",
        help="Input shape with batch axis, e.g. 1,3,32,32 (';' between inputs).",
    ),
    atol: float = typer.Option(1e-4, "--atol", help="Parity tolerance (absolute)."),
    no_parity: bool = typer.Option(
        False, "--no-parity", help="Skip the ONNX Runtime parity check."
    ),
    exporter: str = typer.Option("auto", "--exporter", help="auto, torchscript or dynamo."),
    json_out: bool = typer.Option(False, "--json", help="Print the model card as JSON."),
) -> None:
    """Export a PyTorch model to ONNX (dynamic batch), check it, compare outputs with PyTorch."""
    from edgeloop.cli._console import console, print_json
    from edgeloop.zoo import card_path, export_onnx

    shapes = parse_input_shape(input_shape) if input_shape else None
    dest = out or checkpoint.with_suffix(".onnx")
    card = export_onnx(
        checkpoint,
        dest,
        input_shape=shapes,
        opset=opset,
        atol=atol,
        check_parity=not no_parity,
        exporter=exporter,
    )
    if json_out:
        print_json(card.to_dict())
        return
    info = card.extra["export"]
    parity = info["parity"]
    check = (
        "parity not checked"
        if parity is None
        else f"parity max abs diff {parity['max_abs_diff']:.3g} on {parity['samples']} "
        f"{parity['inputs']} samples"
    )
    console.print(
        f"exported {dest} (opset {info['opset']}, {card.size_bytes} bytes, {info['exporter']} "
        f"exporter) · {check} · card {card_path(dest)}"
    )
