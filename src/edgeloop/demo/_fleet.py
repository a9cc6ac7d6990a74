"""The demo's fleet: real agents simulated in a thread of their own; the fleet stages."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

from edgeloop.demo._context import (
    BAD_ERROR_SHARE,
    BAD_VERSION,
    MODEL,
    DemoContext,
    StageResult,
    need,
)
from edgeloop.demo._report import variant_report
from edgeloop.demo._server import DemoServer
from edgeloop.errors import FleetError

__all__ = ["DemoFleet", "start_fleet", "telemetry"]


class DemoFleet:
    """A simulated fleet of real agents, running in its own thread while the demo goes on.

    Version 3 is the demo's bad release: the simulator fails ``BAD_ERROR_SHARE`` of its
    inferences, as a regression that only shows on the devices would.
    """

    def __init__(self, work: Path, server: DemoServer, devices: int, *,
                 state_dir: str = "devices", **simulator: Any) -> None:
        """``simulator``: more :class:`~edgeloop.agent.Simulator` options (or other values for
        the demo's own: ``rps``, ``fault``), as the closed loop's fleet needs."""
        from edgeloop.agent import Simulator, simulated_profiles

        admin = server.admin()
        tokens = [admin.create_token()["token"] for _ in range(devices)]
        provisioning = server.provisioning(uses=1)  # the image: CA, root, director key
        options: dict[str, Any] = {
            "poll_interval_s": 1.0,
            "rps": 5.0,
            "fault": lambda m: BAD_ERROR_SHARE if m.version == BAD_VERSION else 0.0,
            "provisioning": provisioning,
        }
        self.sim = Simulator(
            server.url,
            work / state_dir,
            tokens,
            simulated_profiles("mix", devices),
            **(options | simulator),
        )
        self.devices = devices
        self.result: Any = None
        self.error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name="demo-fleet", daemon=True)

    def _main(self) -> None:
        async def go() -> None:
            self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
            self._ready.set()
            try:
                self.result = await self.sim.run(3600.0, stop=self._stop)
            finally:
                await self.sim.aclose()

        try:
            asyncio.run(go())
        except BaseException as e:  # reported by stop()
            self.error = e
            self._ready.set()

    def start(self) -> None:
        self._thread.start()
        self._ready.wait(60)

    def serving(self) -> dict[str, int]:
        return {k: v for k, v in self.sim.serving().items() if k != "none"}

    def wait_serving(self, ref: str, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        while self.serving().get(ref, 0) < self.devices:
            if self.error is not None or time.monotonic() > deadline:
                raise FleetError(
                    f"only {self.serving().get(ref, 0)} of {self.devices} simulated devices "
                    f"serve {ref} after {timeout_s:.0f} s"
                ) from self.error
            time.sleep(0.25)

    def close(self) -> None:
        """Stop the fleet if it still runs (cleanup after a failed step; errors not raised)."""
        if self._thread.is_alive():
            self._loop_stop()
            self._thread.join(60)

    def _loop_stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)

    def stop(self) -> Any:
        if self._thread.is_alive():
            self._loop_stop()
        self._thread.join(60)
        if self.error is not None:
            raise FleetError(f"the simulated fleet stopped: {self.error}") from self.error
        return self.result


def start_fleet(ctx: DemoContext) -> StageResult:
    """Enroll ``ctx.devices`` simulated agents; wait until every one serves v1."""
    server = need(ctx.server, "the fleet server")
    fleet = ctx.fleet = DemoFleet(ctx.work, server, ctx.devices)
    fleet.start()
    fleet.wait_serving(f"{MODEL}@1")
    from edgeloop.protocol import Variant

    admin = server.admin()
    devices = admin.devices()
    variants: dict[str, int] = {}
    for d in devices:
        key = str((d.get("installed") or {}).get("variant", "?"))
        variants[key] = variants.get(key, 0) + 1
    release = next(r for r in admin.releases(MODEL) if r["version"] == 1)
    offered = [Variant.from_dict(v) for v in release["variants"]]
    why, by_target = variant_report(devices, ctx.profile, offered)
    return (
        f"{fleet.devices} agents enrolled, fetched via TUF, verified, self-tested and serve "
        f"{MODEL}@1; {why}",
        {"serving": fleet.serving(), "variants": variants, **by_target},
    )


def telemetry(ctx: DemoContext) -> StageResult:
    """Stop the fleet and sum up what its devices served."""
    res = need(ctx.fleet, "the simulated fleet").stop()
    figures = {
        "inferences": res.inferences,
        "inference_errors": res.inference_errors,
        "installs": res.installs,
        "serving": {k: v for k, v in res.serving.items() if k != "none"},
    }
    return (
        f"{res.inferences} inferences served ({res.inference_errors} failed: the failures the "
        f"simulator injected into v{BAD_VERSION}), {res.installs} installs; now serving "
        f"{figures['serving']}",
        figures,
    )
