"""``edgeloop optimize``: run a recipe (int8, int8-dynamic, int4, fp16, fused, a YAML file)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer


def _list_recipes(as_json: bool) -> None:
    from edgeloop.cli._console import print_json, table
    from edgeloop.optimize import list_recipes

    recipes = list_recipes()
    if as_json:
        print_json({name: r.to_dict() for name, r in recipes.items()})
        return
    rows = [
        (name, " -> ".join(p.name for p in r.passes), r.description) for name, r in recipes.items()
    ]
    table("recipes", ["name", "passes", "description"], rows)


def _fmt(v: Any, spec: str = ".4f") -> str:
    return "-" if v is None else format(v, spec)


def _print_summary(out: Path) -> dict[str, Any] | None:
    import json

    from edgeloop.cli._console import console, table

    path = out / "report.json"
    if not path.exists():
        return None
    report: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    rows = []
    for s in report["steps"]:
        rows.append(
            (
                s["step"],
                f"{s['size_bytes'] / 1e3:.1f} kB",
                _fmt(s.get("size_ratio"), ".2f") + "x",
                _fmt(s.get("macs"), ","),
                _fmt(s.get("latency_ms_p50"), ".3f"),
                _fmt(s.get("speedup"), ".2f") + "x",
                _fmt(s.get("metric")),
                _fmt(s.get("cosine_min"), ".5f"),
                _fmt(s.get("seconds"), ".1f"),
            )
        )
    table(
        f"optimize ({report['seconds']:.1f} s)",
        ["step", "size", "smaller", "MACs", "p50 ms", "faster", "metric", "min cos", "s"],
        rows,
    )
    for s in report["steps"]:
        pre = s.get("details", {}).get("preflight")
        if pre:
            console.print(
                f"int8 preflight on {pre['target']}: {pre['int8_verdict']} ({pre['reason']}); "
                f"{pre['format']}, activations {pre['activation_type']}, "
                f"reduce_range={pre['reduce_range']}",
                highlight=False,
                markup=False,
            )
        fusion = s.get("details", {}).get("runtime_fusion")
        if fusion:
            console.print(
                f"runtime fusion: {fusion['qdq_nodes_before']} Q/DQ nodes, "
                f"{fusion['unfused']} left unfused; integer kernels {fusion['integer_ops']}",
                highlight=False,
                markup=False,
            )
        for w in s.get("warnings", []):
            console.print(f"warning {s['step']}: {w}", highlight=False, markup=False)
    console.print(f"wrote {out / 'model.onnx'}, {out / 'report.html'}", highlight=False)
    return report


def optimize(
    model: Path | None = typer.Argument(None, help="ONNX model (or a zoo checkpoint .pt)."),
    recipe: str = typer.Option(
        "int8",
        "--recipe",
        "-r",
        help="Preset name, auto (int8 with --data, else int8-dynamic; keeps the original when "
        "the result is slower), or a recipe file (.yaml/.yml/.json or a path with a /).",
    ),
    data: str | None = typer.Option(
        None, "--data", "-d", help="Dataset name or .npz (one array per input; labels under y)."
    ),
    out: Path = typer.Option(Path("optimized"), "--out", "-o", help="Output folder."),
    max_drop: float | None = typer.Option(
        None, "--max-drop", min=0.0, help="Largest metric drop allowed (0.005 = 0.5 points)."
    ),
    min_cosine: float | None = typer.Option(
        None, "--min-cosine", min=-1.0, max=1.0, help="Per-sample cosine floor vs the original."
    ),
    min_sqnr: float | None = typer.Option(
        None, "--min-sqnr", help="Per-sample SQNR floor (dB) vs the original."
    ),
    metric: str | None = typer.Option(
        None,
        "--metric",
        help="accuracy, auc, or retrieval (top-1 nearest-neighbour agreement with the "
        "original, for embedding models; no labels needed). Default: by task.",
    ),
    target: str | None = typer.Option(
        None, "--target", help="Target profile for the int8 preflight (default: this machine)."
    ),
    samples: int = typer.Option(512, "--samples", min=1, help="Evaluation samples."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    list_: bool = typer.Option(False, "--list-recipes", help="List the preset recipes and exit."),
) -> None:
    """Make a model smaller and faster, within an accuracy budget; report every step."""
    from edgeloop.errors import BudgetError, InputError

    if list_:
        _list_recipes(as_json)
        return
    if model is None:
        raise InputError("give the model to optimize (an .onnx file), or --list-recipes")

    from edgeloop.cli._console import print_json, progress
    from edgeloop.optimize import optimize as run_optimize

    error: BudgetError | None = None
    with progress(transient=True) as bar:
        task = bar.add_task(f"optimize {model.name}", total=100, status="")

        def report(msg: str, frac: float) -> None:
            bar.update(task, completed=round(frac * 100), status=msg)

        auto = recipe == "auto"
        if auto:  # static int8 where there is calibration data, else dynamic; keep the faster
            recipe = "int8" if data is not None else "int8-dynamic"
        try:
            run_optimize(
                model,
                recipe,
                data,
                out_dir=out,
                metric=metric,
                max_drop=max_drop,
                min_cosine=min_cosine,
                min_sqnr=min_sqnr,
                target=target,
                progress=report,
                eval_samples=samples,
                keep_faster=auto,
            )
        except BudgetError as e:  # the best model and the report are written: show them
            error = e
        bar.update(task, completed=100)
    if as_json:
        import json

        print_json(json.loads((out / "report.json").read_text(encoding="utf-8")))
    else:
        _print_summary(out)
    if error is not None:
        raise error
