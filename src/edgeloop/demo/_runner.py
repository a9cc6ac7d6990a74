"""The demo's runner: prepare the work folder, run the stages in order, record each one."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from edgeloop._io import atomic_write_text
from edgeloop.demo._context import DemoContext, DemoResult, DemoStep, Stage
from edgeloop.demo._report import next_steps
from edgeloop.errors import InputError

__all__ = ["run_demo", "run_stages"]


def run_demo(
    workdir: str | Path,
    *,
    epochs: int = 5,
    devices: int = 12,
    fresh: bool = True,
    on_step: Callable[[DemoStep], None] | None = None,
    on_start: Callable[[str], None] | None = None,
    stages: Sequence[Stage] | None = None,
    closed_loop: bool = True,
    fleet: int = 100,
) -> DemoResult:
    """Run the loop end to end under ``workdir`` and return what each step measured.

    ``stages`` defaults to :data:`edgeloop.demo.STAGES`, followed by
    :data:`~edgeloop.demo.LOOP_STAGES` with ``closed_loop`` (the default; on a fleet of
    ``fleet`` devices).
    """
    if devices < 1:
        raise InputError(f"--devices must be at least 1, got {devices}")
    if epochs < 1:
        raise InputError(f"--epochs must be at least 1, got {epochs}")
    if closed_loop and not 5 <= fleet <= 10_000:
        raise InputError(f"--fleet must be 5..10000 (a fifth of it drifts), got {fleet}")
    if stages is None:
        from edgeloop.demo._stages import LOOP_STAGES, STAGES

        stages = (*STAGES, *LOOP_STAGES) if closed_loop else STAGES
    work = Path(workdir).resolve()
    if fresh and work.exists():
        if not (work / "demo.json").exists() and any(work.iterdir()):
            raise InputError(
                f"{str(work)!r} exists and is not an earlier demo's folder; "
                "expected an empty or missing directory"
            )
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    ctx = DemoContext(work, epochs, devices, fleet_size=fleet)
    return run_stages(ctx, stages, on_step, on_start)


def run_stages(
    ctx: DemoContext,
    stages: Sequence[Stage],
    on_step: Callable[[DemoStep], None] | None = None,
    on_start: Callable[[str], None] | None = None,
) -> DemoResult:
    """Run ``stages`` on ``ctx``; ``demo.json`` is rewritten after each, the fleet and server
    are stopped at the end whatever happened."""
    result = DemoResult(ctx.work)
    try:
        for stage in stages:
            if on_start:
                on_start(stage.name)
            t0 = time.perf_counter()
            summary, figures = stage.run(ctx)
            step = DemoStep(stage.name, summary, round(time.perf_counter() - t0, 2), figures)
            result.steps.append(step)
            _save(result)
            if on_step:
                on_step(step)
        if ctx.server is not None:
            result.next = next_steps(ctx.work, ctx.server.data, ctx.server.db_url, result.steps)
            _save(result)
        if any(s.name == "loop-healed" for s in result.steps):
            from edgeloop.demo._loop_report import write_loop_report

            write_loop_report(result.workdir / "demo.json")
    finally:
        ctx.close()
    return result


def _save(result: DemoResult) -> None:
    text = json.dumps(result.to_dict(), indent=2) + "\n"
    atomic_write_text(result.workdir / "demo.json", text)
