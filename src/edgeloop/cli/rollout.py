"""``edgeloop rollout``: staged rollouts with health gates and automatic rollback.

Talks to the fleet server's admin API (``--server``, the admin token as ``edgeloop fleet``
finds it: ``--admin-token-file``, ``$EDGELOOP_ADMIN_TOKEN`` or ``DATA/admin-token``).
"""

from __future__ import annotations

import re
from typing import Any

import typer

from edgeloop.cli._admin import admin_options, rollout_client
from edgeloop.errors import InputError

app = typer.Typer(
    help="Staged rollouts: canary stages, health gates, automatic rollback.", no_args_is_help=True
)

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(text: str) -> float:
    """``10m`` -> 600.0; ``30s``, ``1.5h``, ``2d``, plain seconds."""
    m = _DURATION.match(text)
    if m is None:
        raise InputError(f"duration {text!r}: expected a number with s, m, h or d (e.g. 10m)")
    return float(m.group(1)) * _UNITS[m.group(2)]


app.callback()(admin_options)


def _ref(ref: str) -> tuple[str, int]:
    model, sep, version = ref.partition("@")
    if not sep or not model or not version.isdigit():
        raise InputError(f"{ref!r}: expected MODEL@VERSION, e.g. kws@3")
    return model, int(version)


def _show(r: dict[str, Any], as_json: bool) -> None:
    from edgeloop.cli._console import console, print_json, table

    if as_json:
        print_json(r)
        return
    console.print(
        f"rollout {r['id']}: {r['model']} {r['from_version']} -> {r['to_version']}  "
        f"[bold]{r['state']}[/]  stage {r['stage'] + 1}/{len(r['stages'])} "
        f"({r['stage_percent']:g}%, {r['stage_devices']} device(s))",
        highlight=False,
    )
    console.print(f"  {r['reason']}", highlight=False, markup=False)
    controls = r.get("controls") or {}
    shown = [
        f"{flag} {controls[k]}" for k, flag in _CONTROL_NAMES.items() if controls.get(k) is not None
    ]
    if shown:
        if controls.get("window"):
            shown.append(f"--window-label {controls.get('window_label')}")
            shown.append(f"--window-offset {controls.get('window_offset')}")
        counts = ", ".join(f"{n} {k}" for k, n in (r.get("devices") or {}).items())
        console.print(
            f"  controls: {', '.join(shown)}; devices: {counts}", highlight=False, markup=False
        )
    checks = r.get("checks") or []
    latest: dict[str, dict[str, Any]] = {}
    for c in checks:
        latest[c["gate"]] = c
    if latest:
        rows = [
            (
                g,
                c["status"],
                _num(c["treatment"]),
                _num(c["control"]),
                _num(c["bound"]),
                f"{c.get('devices')}/{c.get('control_devices')}",
            )
            for g, c in latest.items()
        ]
        table("gates", ["gate", "status", "stage", "control", "bound", "devices"], rows)
    events = r.get("events") or []
    if events:
        table(
            "timeline",
            ["at", "event", "state", "stage", "reason"],
            [(e["at"], e["kind"], e["to_state"], e["stage"] + 1, e["reason"]) for e in events],
        )


_CONTROL_NAMES = {
    "max_per_minute": "--max-per-minute",
    "max_concurrent_downloads": "--max-concurrent-downloads",
    "window": "--window",
    "max_failures": "--max-failures",
    "max_failure_rate": "--max-failure-rate",
}


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.4g}"


def _json_opt() -> Any:
    return typer.Option(False, "--json", help="Print JSON.")


# the operator controls, the same options on `rollout start` and `rollout controls`
_CONTROL_HELP = {
    "max_per_minute": "Devices newly given the version per minute.",
    "max_concurrent_downloads": "Devices given it but not yet installed.",
    "download_timeout": "A download stops counting after this (30m).",
    "window": "Maintenance window, device-local HH:MM-HH:MM (02:00-05:00).",
    "window_label": "Device label holding its UTC offset (utc_offset).",
    "window_offset": "UTC offset of devices without that label (+00:00).",
    "max_failures": "Roll back when more devices fail to install.",
    "max_failure_rate": "Roll back when a larger share of a stage fails (0.1).",
}


def _control_opt(name: str) -> Any:
    return typer.Option(None, "--" + name.replace("_", "-"), help=_CONTROL_HELP[name])


@app.command("start")
def start(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="MODEL@VERSION, published to the fleet."),
    stages: str = typer.Option("1,10,50,100", "--stages", help="Percents of the cohort per stage."),
    soak: str = typer.Option("10m", "--soak", help="Soak time per stage (30s, 10m, 1h)."),
    gate: list[str] = typer.Option(
        [], "--gate", help="Health gate, e.g. 'error_rate<0.01', 'p99_ms<=1.2*baseline' (repeat)."
    ),
    cohort: str | None = typer.Option(
        None, "--cohort", help="Only these devices: arch=, hardware=, isa=, or a label (region=eu)."
    ),
    min_devices: int | None = typer.Option(None, "--min-devices", help="Devices per group."),
    min_requests: int | None = typer.Option(None, "--min-requests", help="Requests for rates."),
    alpha: float | None = typer.Option(None, "--alpha", help="Significance of each test."),
    max_per_minute: int | None = _control_opt("max_per_minute"),
    max_concurrent_downloads: int | None = _control_opt("max_concurrent_downloads"),
    download_timeout: str | None = _control_opt("download_timeout"),
    window: str | None = _control_opt("window"),
    window_label: str | None = _control_opt("window_label"),
    window_offset: str | None = _control_opt("window_offset"),
    max_failures: int | None = _control_opt("max_failures"),
    max_failure_rate: float | None = _control_opt("max_failure_rate"),
    as_json: bool = _json_opt(),
) -> None:
    """Start a staged rollout of MODEL@VERSION from the fleet's current version."""
    model, version = _ref(ref)
    try:
        percents = [float(p) for p in stages.split(",") if p.strip()]
    except ValueError as e:
        raise InputError(f"--stages {stages!r}: expected percents like 1,10,50,100") from e
    r = rollout_client(ctx).start(
        model,
        version,
        stages=percents,
        soak_s=parse_duration(soak),
        gates=gate,
        cohort=cohort,
        min_devices=min_devices,
        min_requests=min_requests,
        alpha=alpha,
        max_per_minute=max_per_minute,
        max_concurrent_downloads=max_concurrent_downloads,
        download_timeout_s=None if download_timeout is None else parse_duration(download_timeout),
        window=window,
        window_label=window_label,
        window_offset=window_offset,
        max_failures=max_failures,
        max_failure_rate=max_failure_rate,
    )
    _show(r, as_json)


@app.command("status")
def status(
    ctx: typer.Context,
    rollout_id: int = typer.Argument(..., help="Rollout id."),
    as_json: bool = _json_opt(),
) -> None:
    """A rollout's state, its gates against the control group, and its timeline."""
    _show(rollout_client(ctx).get(rollout_id), as_json)


@app.command("list")
def list_(
    ctx: typer.Context,
    model: str | None = typer.Option(None, "--model", help="Only this model."),
    as_json: bool = _json_opt(),
) -> None:
    """Rollouts, newest first."""
    from edgeloop.cli._console import print_json, table

    found = rollout_client(ctx).list(model)
    if as_json:
        print_json(found)
        return
    rows = [
        (
            r["id"],
            r["model"],
            f"{r['from_version']} -> {r['to_version']}",
            r["state"],
            f"{r['stage'] + 1}/{len(r['stages'])} ({r['stage_percent']:g}%)",
            r["created_at"],
        )
        for r in found
    ]
    table(f"{len(rows)} rollout(s)", ["id", "model", "versions", "state", "stage", "started"], rows)


@app.command("controls")
def controls(
    ctx: typer.Context,
    rollout_id: int = typer.Argument(..., help="Rollout id."),
    max_per_minute: int | None = _control_opt("max_per_minute"),
    max_concurrent_downloads: int | None = _control_opt("max_concurrent_downloads"),
    download_timeout: str | None = _control_opt("download_timeout"),
    window: str | None = _control_opt("window"),
    window_label: str | None = _control_opt("window_label"),
    window_offset: str | None = _control_opt("window_offset"),
    max_failures: int | None = _control_opt("max_failures"),
    max_failure_rate: float | None = _control_opt("max_failure_rate"),
    off: list[str] = typer.Option(
        [], "--off", help="Turn a control off: max-per-minute, window, ... (repeat)."
    ),
    reason: str | None = typer.Option(None, "--reason", help="Recorded in the timeline."),
    as_json: bool = _json_opt(),
) -> None:
    """Change a running rollout's operator controls; the ones not named stay as they are."""
    client = rollout_client(ctx)
    names = {flag.removeprefix("--"): key for key, flag in _CONTROL_NAMES.items()}
    names["download-timeout"] = "download_timeout_s"
    for name in off:
        if name.removeprefix("--") not in names:
            raise InputError(f"--off {name!r}: expected one of {', '.join(sorted(names))}")
    timeout = None if download_timeout is None else parse_duration(download_timeout)
    given = {
        "max_per_minute": max_per_minute,
        "max_concurrent_downloads": max_concurrent_downloads,
        "download_timeout_s": timeout,
        "window": window,
        "window_label": window_label,
        "window_offset": window_offset,
        "max_failures": max_failures,
        "max_failure_rate": max_failure_rate,
    }
    new = dict(client.get(rollout_id).get("controls") or {})
    new.update({k: v for k, v in given.items() if v is not None})
    for name in off:
        new.pop(names[name.removeprefix("--")], None)
    _show(client.set_controls(rollout_id, new, reason=reason), as_json)


def _action(name: str, doc: str) -> None:
    def run(
        ctx: typer.Context,
        rollout_id: int = typer.Argument(..., help="Rollout id."),
        reason: str | None = typer.Option(None, "--reason", help="Recorded in the timeline."),
        as_json: bool = _json_opt(),
    ) -> None:
        _show(getattr(rollout_client(ctx), name)(rollout_id, reason), as_json)

    run.__doc__ = doc
    app.command(name)(run)


_action("pause", "Hold a rollout at its stage (gates still roll it back if they fail).")
_action("resume", "Resume a paused rollout (its stage soaks again).")
_action("abort", "Stop a rollout: every device goes back to the previous version.")
_action("rollback", "Roll back a rollout, also a completed one (recorded in the alias history).")
