"""``edgeloop prune | sparsify | qat | binarize``: compress a zoo checkpoint with a PyTorch pass.

Each command reads a checkpoint (``edgeloop train``'s, or one of these commands'), trains on
the ``train`` split of ``--dataset`` (default: the dataset the checkpoint was trained on),
scores on its ``val`` split, writes the result and prints what changed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Any

import typer

Report = Callable[[str, float], None]


class Importance(str, Enum):
    """``prune --importance``: a choice, so a typo is a usage error before anything loads.

    The values are ``edgeloop.optimize``'s ``IMPORTANCES`` (a test keeps them equal); they are
    spelled out here because importing the optimize package would pull torch into ``--help``.
    """

    l1 = "l1"
    l2 = "l2"
    magnitude = "magnitude"
    taylor = "taylor"


def augment_option() -> Any:
    """``--augment``, shared by every command that trains."""
    return typer.Option(
        None,
        "--augment",
        help="Augment the training batches: shift (shift:N for N pixels), flip, or shift+flip.",
    )


def max_drop_option() -> Any:
    """``--max-drop``, shared by every command that reports accuracy before and after."""
    return typer.Option(
        0.01, "--max-drop", min=0.0, help="Warn if val accuracy drops more (0.01 = 1 point)."
    )


def check_augment(spec: str | None) -> None:
    """Refuse an unknown augmentation before anything is loaded or trained."""
    from edgeloop.zoo import augmentation

    augmentation(spec)


def load_inputs(
    model: Path, dataset: str | None, samples: int | None, seed: int
) -> tuple[Any, dict[str, Any], Any, Any]:
    """``(module, checkpoint meta, train split, val split)``; the dataset defaults to the
    checkpoint's own."""
    import torch

    from edgeloop.data import load_dataset
    from edgeloop.errors import InputError
    from edgeloop.optimize import load_model

    torch.set_num_threads(max(1, torch.get_num_threads()))
    module, meta = load_model(model)
    name = dataset or (meta.get("dataset") or {}).get("name")
    if not name:
        raise InputError(f"{str(model)!r} does not record its dataset; give --dataset")
    train = load_dataset(name, "train", seed=seed)
    val = load_dataset(name, "val", seed=seed)
    if samples:
        train = train.subset(samples)
    return module, meta, train, val


@contextmanager
def bar(description: str) -> Iterator[Report]:
    """A progress bar on stderr driven by ``(message, fraction)`` calls."""
    from edgeloop.cli._console import progress

    with progress(transient=True) as p:
        task = p.add_task(description, total=100, status="")

        def report(msg: str, frac: float) -> None:
            p.update(task, completed=round(frac * 100), status=msg)

        yield report
        p.update(task, completed=100)


def show(
    title: str, rows: list[tuple[str, Any, Any]], details: dict[str, Any], as_json: bool
) -> None:
    """Print a before/after table, or the pass's details as JSON.

    An accuracy drop beyond the budget (``within_budget`` False) is also said on stderr, in
    bold, with or without ``--json``: the written model is much worse than the one read.
    """
    from rich.markup import escape

    from edgeloop.cli._console import console, err_console, print_json, table

    warnings = list(details.get("warnings", []))
    if details.get("within_budget") is False:
        err_console.print(f"[bold red]WARNING:[/] {escape(warnings[0])}", soft_wrap=True)
        warnings = warnings[1:]
    if as_json:
        print_json(details)
        return
    table(title, ["", "before", "after"], rows)
    for w in warnings:
        console.print(f"[yellow]warning[/] {escape(w)}", highlight=False)


def _pct(v: Any) -> str:
    return "-" if v is None else f"{100 * float(v):.2f}%"


def _num(v: Any) -> str:
    return "-" if v is None else f"{int(v):,}"


def prune(
    model: Path = typer.Argument(..., help="Zoo checkpoint (.pt) to prune."),
    ratio: float = typer.Option(..., "--ratio", help="Fraction of channels to remove, in (0, 1)."),
    dataset: str | None = typer.Option(
        None, "--dataset", "-d", help="Dataset (default: the model's)."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Pruned checkpoint to write (.pt)."),
    importance: Importance = typer.Option(
        Importance.l2, "--importance", help="How channels are ranked."
    ),
    steps: int = typer.Option(1, "--steps", min=1, help="Prune in this many rounds."),
    finetune_epochs: int = typer.Option(
        2, "--finetune-epochs", min=0, help="Fine-tuning epochs after each round."
    ),
    protect: list[str] = typer.Option([], "--protect", help="Layer that keeps all its channels."),
    global_: bool = typer.Option(False, "--global", help="Rank channels across all layers."),
    lr: float = typer.Option(3e-3, "--lr", help="Fine-tuning learning rate (peak)."),
    batch_size: int = typer.Option(64, "--batch-size", min=1, help="Training batch size."),
    samples: int | None = typer.Option(
        None, "--samples", min=1, help="Use at most N training samples."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed for data order and initialisation."),
    augment: str | None = augment_option(),
    max_drop: float = max_drop_option(),
    as_json: bool = typer.Option(False, "--json", help="Print the details as JSON."),
) -> None:
    """Remove whole channels (structured pruning with torch-pruning) and fine-tune."""
    from edgeloop.optimize import check_ratio, save_model
    from edgeloop.optimize import prune as run_prune

    check_ratio(ratio)  # refused before anything is loaded or trained
    check_augment(augment)
    module, meta, train, val = load_inputs(model, dataset, samples, seed)
    with bar(f"prune {model.name}") as report:
        res = run_prune(
            module, ratio=ratio, data=train, val=val, importance=importance.value, steps=steps,
            global_pruning=global_, protect=protect, finetune_epochs=finetune_epochs, lr=lr,
            batch_size=batch_size, progress=report, seed=seed, augment=augment,
            max_drop=max_drop,
        )  # fmt: skip
    d = res.details
    save_model(
        res.model, out, meta, pruning_history=res.artifacts["pruning_history"],
        metrics={"accuracy": d["accuracy_after"]} if "accuracy_after" in d else None,
        note=f"prune ratio={ratio} importance={importance.value} steps={steps}",
    )  # fmt: skip
    d.update(out=str(out), seconds=round(res.seconds, 2), warnings=res.warnings)
    rows = [
        ("MACs", _num(d["macs_before"]), _num(d["macs_after"])),
        ("parameters", _num(d["params_before"]), _num(d["params_after"])),
        ("val accuracy", _pct(d.get("accuracy_before")), _pct(d.get("accuracy_after"))),
    ]
    show(f"prune {model.name} -> {out} ({res.seconds:.1f} s)", rows, d, as_json)


def sparsify(
    model: Path = typer.Argument(..., help="Zoo checkpoint (.pt)."),
    sparsity: float = typer.Option(
        ..., "--sparsity", help="Fraction of weights to zero, in (0, 1)."
    ),
    dataset: str | None = typer.Option(
        None, "--dataset", "-d", help="Dataset (default: the model's)."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Checkpoint to write (.pt)."),
    finetune_epochs: int = typer.Option(
        1, "--finetune-epochs", min=0, help="Fine-tuning epochs after sparsifying."
    ),
    global_: bool = typer.Option(False, "--global", help="Rank weights across all layers."),
    lr: float = typer.Option(1e-3, "--lr", help="Learning rate (peak)."),
    samples: int | None = typer.Option(
        None, "--samples", min=1, help="Use at most N training samples."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed for data order and initialisation."),
    augment: str | None = augment_option(),
    max_drop: float = max_drop_option(),
    as_json: bool = typer.Option(False, "--json", help="Print the details as JSON."),
) -> None:
    """Zero the smallest weights (unstructured); shrinks the compressed download, not latency."""
    from edgeloop.optimize import check_ratio, save_model
    from edgeloop.optimize import sparsify as run_sparsify

    check_ratio(sparsity, "sparsity")
    check_augment(augment)
    module, meta, train, val = load_inputs(model, dataset, samples, seed)
    with bar(f"sparsify {model.name}") as report:
        res = run_sparsify(
            module, sparsity=sparsity, global_pruning=global_, data=train, val=val,
            finetune_epochs=finetune_epochs, lr=lr, progress=report, seed=seed, augment=augment,
            max_drop=max_drop,
        )  # fmt: skip
    save_model(res.model, out, meta, pruning_history=None, note=f"sparsify {sparsity}")
    d = res.details
    d.update(out=str(out), seconds=round(res.seconds, 2), warnings=res.warnings)
    b, a = d["onnx_bytes_before"], d["onnx_bytes_after"]
    rows = [
        ("zero weights", "-", _pct(d["sparsity"])),
        ("ONNX bytes", _num(b["raw"]), _num(a["raw"])),
        ("zlib bytes", _num(b["zlib"]), _num(a["zlib"])),
        ("lzma bytes", _num(b["lzma"]), _num(a["lzma"])),
        ("val accuracy", _pct(d.get("accuracy_before")), _pct(d.get("accuracy_after"))),
    ]
    show(f"sparsify {model.name} -> {out}", rows, d, as_json)


def qat(
    model: Path = typer.Argument(..., help="Zoo checkpoint (.pt)."),
    dataset: str | None = typer.Option(
        None, "--dataset", "-d", help="Dataset (default: the model's)."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="QDQ ONNX model to write (.onnx)."),
    epochs: int = typer.Option(3, "--epochs", min=0, help="Training epochs."),
    lr: float = typer.Option(1e-4, "--lr", help="Learning rate (peak)."),
    samples: int | None = typer.Option(
        None, "--samples", min=1, help="Use at most N training samples."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed for data order and initialisation."),
    augment: str | None = augment_option(),
    max_drop: float = max_drop_option(),
    as_json: bool = typer.Option(False, "--json", help="Print the details as JSON."),
) -> None:
    """Quantization-aware training; writes an int8 QDQ ONNX model."""
    from edgeloop.optimize import batch_of, export_qdq
    from edgeloop.optimize import qat as run_qat

    check_augment(augment)
    module, _, train, val = load_inputs(model, dataset, samples, seed)
    with bar(f"qat {model.name}") as report:
        res = run_qat(
            module, train, val, epochs=epochs, lr=lr, progress=report, seed=seed,
            augment=augment, max_drop=max_drop,
        )  # fmt: skip
    export_qdq(res.model, out, example=batch_of(train, 1))
    d = res.details
    d.update(
        out=str(out), seconds=round(res.seconds, 2), bytes=out.stat().st_size,
        warnings=res.warnings,
    )  # fmt: skip
    rows = [
        ("val accuracy (float)", _pct(d.get("accuracy_float")), "-"),
        (
            "val accuracy (int8)",
            _pct(d.get("accuracy_fake_quant_before")),
            _pct(d.get("accuracy_after")),
        ),
    ]
    show(f"qat {model.name} -> {out} (before/after training)", rows, d, as_json)


def binarize(
    model: Path = typer.Argument(..., help="Zoo checkpoint (.pt)."),
    dataset: str | None = typer.Option(
        None, "--dataset", "-d", help="Dataset (default: the model's)."
    ),
    out: Path = typer.Option(
        ..., "--out", "-o", help="Packed binary-weights file to write (.npz)."
    ),
    epochs: int = typer.Option(10, "--epochs", min=1, help="Training epochs."),
    lr: float = typer.Option(1e-3, "--lr", help="Learning rate (peak)."),
    keep: list[str] = typer.Option([], "--keep", help="Layer that keeps float weights."),
    all_layers: bool = typer.Option(
        False, "--all-layers", help="Binarize the first and last layers too."
    ),
    onnx: Path | None = typer.Option(None, "--onnx", help="Also write the unpacked model as ONNX."),
    samples: int | None = typer.Option(
        None, "--samples", min=1, help="Use at most N training samples."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed for data order and initialisation."),
    augment: str | None = augment_option(),
    max_drop: float = max_drop_option(),
    as_json: bool = typer.Option(False, "--json", help="Print the details as JSON."),
) -> None:
    """1-bit weights with a per-channel scale (straight-through training), stored packed."""
    from edgeloop.optimize import binarize as run_binarize
    from edgeloop.optimize import fp32_bytes, load_binary, save_binary
    from edgeloop.optimize import model_metric as metric

    check_augment(augment)
    module, meta, train, val = load_inputs(model, dataset, samples, seed)
    with bar(f"binarize {model.name}") as report:
        res = run_binarize(
            module, train, val, epochs=epochs, lr=lr, keep=keep,
            keep_first_last=not all_layers, progress=report, seed=seed, augment=augment,
            max_drop=max_drop,
        )  # fmt: skip
    size = save_binary(
        res.model, out, res.details["binarized"], arch=meta["arch"],
        arch_kwargs=meta["arch_kwargs"], input_shape=None,
    )  # fmt: skip
    loaded = load_binary(out)
    d = res.details
    d.update(
        out=str(out), seconds=round(res.seconds, 2), packed_bytes=size,
        fp32_bytes=fp32_bytes(module), accuracy_packed=metric(loaded, val),
        warnings=res.warnings,
    )  # fmt: skip
    if onnx is not None:
        from edgeloop.zoo import export_onnx

        export_onnx(loaded, onnx, meta=meta)
        d["onnx"] = str(onnx)
    rows = [
        ("bytes", _num(d["fp32_bytes"]), f"{_num(size)} ({d['fp32_bytes'] / size:.1f}x smaller)"),
        ("val accuracy", _pct(d.get("accuracy_before")), _pct(d["accuracy_packed"])),
    ]
    show(f"binarize {model.name} -> {out}", rows, d, as_json)
