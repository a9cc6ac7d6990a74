"""``edgeloop profile`` (measure this machine) and ``edgeloop targets`` (built-in profiles)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from edgeloop.artifacts import DeviceProfile


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "unknown"
    if isinstance(value, float):
        return f"{value:,.1f}{unit}"
    return f"{value}{unit}"


def _rows(p: DeviceProfile) -> list[tuple[str, str]]:
    cores = f"{_fmt(p.cores_physical)} physical / {_fmt(p.cores_logical)} logical"
    memory = _fmt(p.memory_total_mb, " MB")
    if p.memory_available_mb is not None:
        memory += f" ({_fmt(p.memory_available_mb, ' MB')} available)"
    power = _fmt(p.power_w, " W") + (f" ({p.power_source})" if p.power_w is not None else "")
    rows = [
        ("name", p.name),
        ("cpu", p.cpu_model),
        ("arch", p.arch),
        ("cores", cores),
        ("isa", ", ".join(p.isa) or "none detected"),
        ("memory", memory),
        ("fp32 throughput", _fmt(p.fp32_gops, " GOPS")),
        ("int8 throughput", _fmt(p.int8_gops, " GOPS")),
        ("memory bandwidth", _fmt(p.mem_bandwidth_gbps, " GB/s")),
        ("power", power),
        ("providers", ", ".join(p.providers)),
    ]
    if p.os:
        rows.insert(3, ("os", p.os))
    kernels = p.kernels or {}
    families: dict[str, list[tuple[float, float]]] = {}
    for key, gops in kernels.items():
        family, sep, macs = key.partition("@")
        if sep:
            try:
                families.setdefault(family, []).append((float(macs), float(gops)))
            except ValueError:
                continue
    for family, points in sorted(families.items()):
        rows.append(
            (
                f"{family} GOPS",
                " / ".join(f"{g:,.1f}" for _, g in sorted(points)) + " (small→large)",
            )
        )
    if "op_overhead_us" in kernels:
        rows.append(
            (
                "overheads",
                f"{_fmt(kernels['op_overhead_us'], ' µs')} per operator, "
                f"{_fmt(kernels.get('run_overhead_us'), ' µs')} per run",
            )
        )
    if "lat:models" in kernels:
        rows.append(
            (
                "latency model",
                f"calibrated on {int(kernels['lat:models'])} models timed here "
                f"(run {_fmt(kernels.get('lat:run', 0.0) * 1e3, ' µs')}, "
                f"{_fmt(kernels.get('lat:op_other', 0.0) * 1e3, ' µs')} per data-movement op)",
            )
        )
    return rows


def profile(
    as_json: bool = typer.Option(False, "--json", help="Print the profile as JSON on stdout."),
    save: Path | None = typer.Option(None, "--save", help="Write the profile to this JSON file."),
    quick: bool = typer.Option(False, "--quick", help="Shorter measurements (a few seconds)."),
    threads: int | None = typer.Option(
        None, "--threads", min=1, help="Threads for the GEMM kernels (default: physical cores)."
    ),
    calibrate: bool = typer.Option(
        False,
        "--calibrate",
        help="Also fit the cost model's latency coefficients on whole models timed here "
        "(needs the build install: torch; about a minute, --quick about 15 s).",
    ),
) -> None:
    """Measure this machine: CPU, ISA, memory, fp32/int8 throughput, bandwidth, power."""
    from edgeloop.cli._console import console, print_json, progress, table
    from edgeloop.hardware import PROFILE_STEPS, profile_device

    if calibrate:
        try:
            import torch  # noqa: F401
        except ImportError:
            raise typer.BadParameter(
                "--calibrate builds its calibration models with torch, which is not "
                "installed here (install edgeloop with the build extras)"
            ) from None
    with progress(transient=True) as bar:
        task = bar.add_task("profiling", total=len(PROFILE_STEPS), status="")
        started: list[str] = []

        def on_step(name: str) -> None:
            if started:
                bar.advance(task)
            started.append(name)
            bar.update(task, status=name)

        p = profile_device(quick=quick, threads=threads, on_step=on_step)
        bar.advance(task)
    if calibrate:
        import shutil
        import tempfile

        from edgeloop.analysis import calibrate as fit_on_models
        from edgeloop.zoo import calibration_models

        with progress(transient=True) as bar:
            bar.add_task("calibrating the latency model on whole models", total=None, status="")
            work = Path(tempfile.mkdtemp(prefix="edgeloop-calibrate-"))
            try:
                p = fit_on_models(p, calibration_models(work, quick=quick), quick=quick)
            finally:
                shutil.rmtree(work, ignore_errors=True)
    if save is not None:
        p.save(save)
    if as_json:
        print_json(p.to_dict())
        return
    table(f"device profile ({p.source})", ["", "value"], _rows(p))
    console.print(f"[dim]{p.notes}[/]")
    if save is not None:
        console.print(f"saved to [bold]{save}[/]")


def targets(
    as_json: bool = typer.Option(False, "--json", help="Print the targets as JSON on stdout."),
    name: str | None = typer.Argument(None, help="Show one target in full (name or alias)."),
) -> None:
    """List the built-in target profiles (published figures, sources in each file)."""
    from edgeloop.cli._console import console, print_json, table
    from edgeloop.hardware import list_targets, load_target

    if name is not None:
        p = load_target(name)
        if as_json:
            print_json(p.to_dict())
            return
        table(f"target {p.name}", ["", "value"], _rows(p))
        console.print("[bold]references[/]\n" + "\n".join(f"  {r}" for r in p.references))
        console.print(f"[dim]{p.notes}[/]")
        return
    profiles = [load_target(n) for n in list_targets()]
    if as_json:
        print_json([p.to_dict() for p in profiles])
        return
    table(
        "built-in targets (GOPS are derived peaks; see `edgeloop targets NAME`)",
        ["name", "cpu", "cores", "isa", "memory", "fp32 GOPS", "int8 GOPS", "GB/s", "power"],
        [
            (
                p.name,
                p.cpu_model,
                p.cores_physical,
                " ".join(p.isa),
                _fmt(p.memory_total_mb, " MB"),
                _fmt(p.fp32_gops),
                _fmt(p.int8_gops),
                _fmt(p.mem_bandwidth_gbps),
                _fmt(p.power_w, " W"),
            )
            for p in profiles
        ],
    )
