"""Rollout stages: release a new version made from v1 and roll it out through health gates.

v2 (``fused``) is good and completes; v3 (``fp16``) is the demo's bad release: the simulator
injects failures into ``BAD_ERROR_SHARE`` of its inferences (the model is fine; the fault is
the demo's), its gate fails and the rollout rolls it back. The summary says so plainly.
"""

from __future__ import annotations

import time
from typing import Any

from edgeloop.demo._context import (
    BAD_ERROR_SHARE,
    BAD_VERSION,
    MODEL,
    DemoContext,
    StageResult,
    need,
)
from edgeloop.errors import FleetError

__all__ = ["release", "roll_back_bad", "roll_out", "roll_out_good"]


def release(ctx: DemoContext, version: int, recipe: str) -> None:
    """A new version made from v1 by ``recipe``, bundled, pushed and published (not desired)."""
    from edgeloop.optimize import optimize
    from edgeloop.registry import Registry

    server = need(ctx.server, "the fleet server")
    out = ctx.work / f"v{version}-{recipe}"
    card = optimize(need(ctx.onnx, "the exported ONNX model"), recipe, "digits", out_dir=out)
    path = server.pack(out / "model.onnx", card, version, ctx.work / f"{MODEL}-{version}.elb")
    with Registry(server.db_url, server.data) as reg:
        reg.push(out / "model.onnx", MODEL, card=card, version=version, bundles=[(path, "any", {})])
    server.admin().publish(MODEL, version)


def roll_out(ctx: DemoContext, version: int, recipe: str) -> tuple[dict[str, Any], float]:
    """Release ``version`` and run a staged rollout of it to its end; (rollout, seconds)."""
    from edgeloop.client import RolloutClient

    release(ctx, version, recipe)
    server = need(ctx.server, "the fleet server")
    client = RolloutClient(server.url, server.admin_token, verify=server.verify)
    r = client.start(
        MODEL,
        version,
        stages=(25, 50, 100),
        soak_s=3.0,
        gates=("error_rate<0.05", "p99_ms<=3*baseline"),
        min_devices=2,
        min_requests=30,
    )
    t0 = time.monotonic()
    r = client.wait(r["id"], ("completed", "rolled_back", "aborted"), timeout_s=300)
    return r, time.monotonic() - t0


def _figures(r: dict[str, Any], took: float) -> dict[str, Any]:
    events = [str(e["to_state"]) for e in r.get("events", []) if e.get("to_state")]
    return {"id": r["id"], "state": r["state"], "seconds": round(took, 1), "events": events}


def roll_out_good(ctx: DemoContext, version: int = 2) -> StageResult:
    """v2 goes through every stage; all devices serve it."""
    fleet = need(ctx.fleet, "the simulated fleet")
    recipe = "fused"
    r, took = roll_out(ctx, version, recipe)
    if r["state"] != "completed":
        raise FleetError(f"the good v{version} ended {r['state']!r}: {r.get('reason', '')}")
    fleet.wait_serving(f"{MODEL}@{version}")
    return (
        f"v{version} ({recipe}) went 25% -> 50% -> 100% through its gates in {took:.0f} s; "
        f"all {fleet.devices} devices serve it",
        _figures(r, took),
    )


def roll_back_bad(ctx: DemoContext, version: int = BAD_VERSION) -> StageResult:
    """The bad v3 fails its gate; the rollout rolls back and every device serves v2 again."""
    fleet = need(ctx.fleet, "the simulated fleet")
    recipe = "fp16"
    r, took = roll_out(ctx, version, recipe)
    why = next(
        (e.get("reason", "") for e in r.get("events", []) if e.get("to_state") == "failed"),
        r.get("reason", ""),
    )
    if r["state"] != "rolled_back":
        raise FleetError(f"the bad v{version} ended {r['state']!r}, expected 'rolled_back'")
    fleet.wait_serving(f"{MODEL}@{version - 1}")
    return (
        f"v{version} ({recipe}) is bad on purpose: the simulator injects failures into "
        f"{BAD_ERROR_SHARE:.0%} of its inferences on every device that runs it (the model file "
        f"itself is fine), as a regression that only shows in the field would. Rolled out, it "
        f"failed its gate at {r['stage_percent']:g}%: {why}; rolled back, every device is on "
        f"v{version - 1} again in {took:.0f} s, from its known-good slot",
        {**_figures(r, took), "injected": {"by": "simulator", "error_share": BAD_ERROR_SHARE}},
    )
