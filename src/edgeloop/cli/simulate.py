"""``edgeloop fleet simulate``: N real agents in one process against a fleet server."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import typer

from edgeloop.cli import _admin


def simulate(
    ctx: typer.Context,
    devices: int = typer.Option(10, "--devices", "-n", min=1, help="How many agents to run."),
    server: str | None = typer.Option(
        None, "--server", help="The fleet server (default: the fleet group's --server)."
    ),
    profiles: str = typer.Option(
        "mix", "--profiles", help="'mix' (built-in targets in turn), 'this', or a target name."
    ),
    duration: float = typer.Option(30.0, "--duration", min=0.1, help="Seconds to run."),
    admin_token: str | None = typer.Option(
        None, "--admin-token", help="Admin token (default: as the other fleet commands find it)."
    ),
    model: str | None = typer.Option(None, "--model", help="The model the devices follow."),
    state_root: Path | None = typer.Option(
        None, "--state-root", help="Where the devices' state dirs go (default: a temp dir)."
    ),
    poll_interval: float = typer.Option(
        10.0,
        "--poll-interval",
        min=0.1,
        help="Seconds between a device's check-ins, until the server sets its own interval.",
    ),
    rps: float = typer.Option(0.5, "--rps", min=0.0, help="Inferences per second per device."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    light: bool = typer.Option(
        False,
        "--light",
        help="Light mode for thousands of devices: one shared copy of each bundle on disk "
        "(slots hard-linked to it), one inference session per bundle; the protocol unchanged.",
    ),
) -> None:
    """Run N real agents (own keys, state, profile, workload) in one process, then summarise."""
    import asyncio

    from edgeloop.agent import Simulator, simulated_profiles
    from edgeloop.cli._console import print_json, table
    from edgeloop.client import create_tokens

    token = _admin.admin_token(ctx, admin_token)
    server = _admin.server(ctx, server)

    verify = _admin.verify(ctx)
    # every simulated device is provisioned as a real one would be: root, director key, CA
    from edgeloop.client import AdminClient

    provisioning = AdminClient(server, token, verify=verify).provision(
        ca_pem=_admin.ca_pem(ctx), model=model
    )

    async def main(root: Path) -> Any:
        tokens = await create_tokens(server, token, devices, model=model, verify=verify)
        sim = Simulator(
            server,
            root,
            tokens,
            simulated_profiles(profiles, devices),
            poll_interval_s=poll_interval,
            rps=rps,
            provisioning=provisioning,
            light=light,
        )
        try:
            return await sim.run(duration)
        finally:
            await sim.aclose()

    if state_root is None:
        with tempfile.TemporaryDirectory(prefix="edgeloop-sim-") as tmp:
            result = asyncio.run(main(Path(tmp)))
    else:
        result = asyncio.run(main(state_root))
    if as_json:
        print_json(result.to_dict())
        return
    table(
        f"{result.devices} devices, {result.duration_s:.1f} s",
        ["endpoint", "requests", "per s", "p50 ms", "p99 ms", "errors"],
        [
            (
                p,
                int(r["count"]),
                f"{r['rate_per_s']:.1f}",
                f"{r['p50_ms']:.1f}",
                f"{r['p99_ms']:.1f}",
                int(r["errors"]),
            )
            for p, r in sorted(result.requests.items())
        ],
    )
    table(None, ["serving", "devices"], sorted(result.serving.items()))
    print(
        f"enrolled {result.enrolled}/{result.devices}, installs {result.installs}, "
        f"inferences {result.inferences} ({result.inference_errors} errors), "
        f"poll failures {result.poll_failures}, models loaded {result.loads}"
    )
