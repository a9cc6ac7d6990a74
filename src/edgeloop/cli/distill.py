"""``edgeloop distill``: train a small zoo student on a teacher checkpoint's soft targets."""

from __future__ import annotations

from pathlib import Path

import typer

from edgeloop.cli.compress import augment_option


def distill(
    teacher: Path = typer.Option(..., "--teacher", "-t", help="Teacher checkpoint (.pt)."),
    student: str = typer.Option(..., "--student", "-s", help="Student architecture (zoo name)."),
    dataset: str | None = typer.Option(
        None, "--dataset", "-d", help="Dataset (default: the teacher's)."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Student checkpoint to write (.pt)."),
    epochs: int = typer.Option(10, "--epochs", min=1, help="Training epochs."),
    temperature: float = typer.Option(2.0, "--temperature", help="Softmax temperature (> 0)."),
    alpha: float = typer.Option(
        0.5, "--alpha", help="Weight of the soft-target loss; 1 - alpha goes to the labels."
    ),
    width: float | None = typer.Option(None, "--width", help="Student width multiplier."),
    feature: list[str] = typer.Option(
        [],
        "--feature",
        help="Match intermediate features: STUDENT_LAYER=TEACHER_LAYER (repeatable).",
    ),
    lr: float = typer.Option(3e-3, "--lr", help="Learning rate (peak)."),
    batch_size: int = typer.Option(64, "--batch-size", min=1, help="Training batch size."),
    samples: int | None = typer.Option(
        None, "--samples", min=1, help="Use at most N training samples."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed for data order and initialisation."),
    augment: str | None = augment_option(),
    unlabeled: str | None = typer.Option(
        None,
        "--unlabeled",
        help="More inputs without labels (a .npz/.csv/image folder, or a built-in dataset): "
        "the teacher's soft targets teach on them too.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the details as JSON."),
) -> None:
    """Knowledge distillation: soft targets at a temperature plus hard labels."""
    import torch

    from edgeloop.cli.compress import bar, check_augment, load_inputs, show
    from edgeloop.errors import InputError
    from edgeloop.optimize import distill as run_distill
    from edgeloop.optimize import load_unlabelled, save_model, student_kwargs, width_arg
    from edgeloop.zoo import build_model

    if not temperature > 0:
        raise InputError(f"--temperature must be > 0, got {temperature}")
    if not 0.0 <= alpha <= 1.0:
        raise InputError(f"--alpha must be in [0, 1], got {alpha}")
    pairs = []
    for f in feature:
        s_name, sep, t_name = f.partition("=")
        if not sep or not s_name or not t_name:
            raise InputError(f"--feature {f!r}: expected STUDENT_LAYER=TEACHER_LAYER")
        pairs.append((s_name, t_name))
    check_augment(augment)
    model, meta, train, val = load_inputs(teacher, dataset, samples, seed)
    extra = None if unlabeled is None else load_unlabelled(unlabeled, seed)
    kwargs = student_kwargs(student, train, meta.get("arch_kwargs") or {})
    if width is not None:
        kwargs["width"] = width_arg(student, width)
    torch.manual_seed(seed)
    net = build_model(student, **kwargs)
    with bar(f"distill {teacher.name} -> {student}") as report:
        res = run_distill(
            model, net, train, val, temperature=temperature, alpha=alpha, epochs=epochs,
            lr=lr, batch_size=batch_size, features=pairs, progress=report, seed=seed,
            augment=augment, unlabeled=extra,
        )  # fmt: skip
    d = res.details
    save_model(
        res.model, out, meta, arch=student, arch_kwargs=kwargs,
        metrics={"accuracy": d["student_accuracy"]} if "student_accuracy" in d else None,
        note=f"distilled from {teacher.name} (T={temperature}, alpha={alpha}, augment={augment})",
    )  # fmt: skip
    d.update(out=str(out), student=student, student_kwargs=kwargs, seconds=round(res.seconds, 2))

    def pct(v: object) -> str:
        return "-" if v is None else f"{100 * float(v):.2f}%"  # type: ignore[arg-type]

    rows = [
        ("MACs", f"{d['teacher_macs']:,}", f"{d['student_macs']:,} ({d['macs_ratio']:.2f}x)"),
        ("val accuracy", pct(d.get("teacher_accuracy")), pct(d.get("student_accuracy"))),
    ]
    show(f"distill: teacher {teacher.name} / student {student} -> {out}", rows, d, as_json)
