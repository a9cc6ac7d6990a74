"""``edgeloop demo``: run the whole loop on embedded defaults (SQLite, local files, loopback)."""

from __future__ import annotations

from pathlib import Path

import typer

__all__ = ["demo"]


def demo(
    workdir: Path = typer.Option(
        Path("edgeloop-demo"), "--workdir", "-w", help="Folder for everything the demo writes."
    ),
    epochs: int = typer.Option(5, "--epochs", min=1, help="Training epochs for the CNN."),
    devices: int = typer.Option(12, "--devices", min=1, help="Simulated devices in the fleet."),
    json_out: bool = typer.Option(False, "--json", help="Print the results as JSON."),
    closed_loop: bool = typer.Option(True, "--closed-loop/--no-closed-loop",
                                     help="Then run the closed loop (the default): drift on a "
                                     "fifth of a monitored fleet, detection, federated "
                                     "fine-tune, delta rollout, healed, report.html. "
                                     "--no-closed-loop stops after the rollback (a few "
                                     "minutes)."),
    fleet: int = typer.Option(100, "--fleet", help="Simulated devices in the closed loop's "
                              "fleet (5..10000)."),
) -> None:
    """Profile, train, optimize, bundle, publish to a simulated fleet, roll out, roll back;
    then the closed loop: drift, detection, federated fine-tune, delta rollout, healed."""
    from rich.markup import escape

    from edgeloop.cli._console import console, err_console, print_json, table
    from edgeloop.demo import DemoStep, run_demo

    status = err_console.status("starting")

    def started(name: str) -> None:
        status.update(f"[bold]{name}[/] ...")

    def done(s: DemoStep) -> None:
        err_console.print(
            f"[green]done[/] {s.name:<10} {s.seconds:7.1f} s  {escape(s.summary)}", soft_wrap=True
        )

    with status:
        result = run_demo(workdir, epochs=epochs, devices=devices, on_step=done,
                          on_start=started, closed_loop=closed_loop, fleet=fleet)
    if json_out:
        print_json(result.to_dict())
        return
    table(
        "edgeloop demo",
        ["step", "seconds", "result"],
        [(s.name, f"{s.seconds:.1f}", s.summary) for s in result.steps],
    )
    console.print(f"Everything is under {result.workdir} (summary in demo.json).")
    if result.next is not None:
        from edgeloop.demo import render_next

        console.print()
        for line in render_next(result.next):
            console.print(line, markup=False, highlight=False, soft_wrap=True)
