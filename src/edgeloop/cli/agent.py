"""``edgeloop agent``: run the device agent (enroll, poll, install, serve on 127.0.0.1)."""

from __future__ import annotations

from pathlib import Path

import typer


def agent(
    server: str | None = typer.Option(
        None, "--server", help="The fleet server's URL (default: the provisioning file's)."
    ),
    state: Path = typer.Option(..., "--state", help="The agent's state directory (keys, slots)."),
    enroll_token: str | None = typer.Option(
        None, "--enroll-token", envvar="EDGELOOP_ENROLL_TOKEN", help="One-time enrollment token."
    ),
    serve_port: int | None = typer.Option(
        None, "--serve-port", min=0, max=65535, help="Serve inference on 127.0.0.1:PORT."
    ),
    once: bool = typer.Option(False, "--once", help="Poll once, print the status, exit."),
    duration: float | None = typer.Option(
        None, "--duration", min=0, help="Stop after this many seconds (default: run until ^C)."
    ),
    target: str | None = typer.Option(
        None, "--profile", help="Report this built-in target's profile instead of measuring."
    ),
    poll_interval: float = typer.Option(
        60.0, "--poll-interval", min=0.1, help="Seconds between polls until the server says."
    ),
    provision: Path | None = typer.Option(
        None,
        "--provision",
        help="Provisioning file (`edgeloop fleet provision`): the trust this device pins.",
    ),
    insecure_first_use: bool = typer.Option(
        False,
        "--insecure-first-use",
        help="Without a provisioning file, believe the first server that answers (TOFU).",
    ),
    personalize: int | None = typer.Option(
        None,
        "--personalize",
        min=1,
        max=1_000_000,
        help="Fit a personal head on this device's delayed labels at a poll once this many new "
        "labels arrived; served only when it beats the fleet head on held-out labels.",
    ),
    label: list[str] = typer.Option(
        [], "--label", help="A label this device reports (KEY=VALUE; repeat): its cohort, and "
        "power=mains / network=unmetered for joining federated runs."
    ),
    federated: bool = typer.Option(
        False, "--federated",
        help="Take part in the fleet's deployed federated runs (a SuperNode on this device's "
        "delayed labels) when idle, on mains and unmetered; needs the federated extra.",
    ),
    federated_min_labels: int = typer.Option(
        50, "--federated-min-labels", min=1, max=10_000_000,
        help="With --federated: labelled samples the device needs to join a run.",
    ),
) -> None:
    """Run the device agent: enroll, follow the fleet's assignments, serve the model locally."""
    import asyncio
    import json

    from edgeloop.agent import Agent, LocalServer
    from edgeloop.cli._console import err_console, print_json
    from edgeloop.errors import InputError
    from edgeloop.protocol import load_provisioning

    labels: dict[str, str] = {}
    for item in label:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip() or len(item) > 200:
            raise InputError(f"--label {item!r:.80}: expected KEY=VALUE")
        labels[key.strip()] = value.strip()
    provisioning = load_provisioning(provision) if provision is not None else None
    if provisioning is None and insecure_first_use:
        err_console.print(
            "[yellow]warning:[/] --insecure-first-use: this device will trust whatever server "
            "answers its enrollment (TUF root, director key); provision it instead"
        )
    profile = None
    if target is not None:
        from edgeloop.hardware import load_target

        profile = load_target(target)
    a = Agent(
        server,
        state,
        enroll_token,
        profile,
        poll_interval_s=poll_interval,
        provisioning=provisioning,
        insecure_first_use=insecure_first_use,
        personalize_every=personalize,
        labels=labels,
    )
    if federated:
        from edgeloop.federated.device import JoinPolicy, Participant

        a.participant = Participant.for_agent(a, JoinPolicy(min_labels=federated_min_labels))
    http = None
    if serve_port is not None:
        http = LocalServer(
            a.predict_with_version, a.status, port=serve_port, feedback=a.feedback
        ).start()
        err_console.print(f"serving inference on {http.url}/v1/predict")
        print(json.dumps({"serving": http.url}), flush=True)

    async def main() -> None:
        try:
            if once:
                await a.poll_once()
            else:
                await a.run(duration_s=duration)
        finally:
            await a.aclose()

    try:
        asyncio.run(main())
        status = a.status()
    finally:
        if http is not None:
            http.close()
        a.close()
    if once:
        print_json(status)
        if status["model"] is None and (a.last_error or a.poll_error):
            raise typer.Exit(1)  # nothing to serve and the poll did not bring a model
