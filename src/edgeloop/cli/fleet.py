"""``edgeloop fleet``: administer a running fleet server over HTTP with the admin token.

The server and the token come from the shared admin options (``cli/_admin.py``); requests go
through :class:`edgeloop.client.AdminClient` (httpx only).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from edgeloop.cli._admin import admin_client, admin_options, ca_pem
from edgeloop.errors import InputError

app = typer.Typer(
    help="Administer a fleet: enrollment tokens, devices, releases.", no_args_is_help=True
)

app.callback()(admin_options)


def _json_opt() -> Any:
    return typer.Option(False, "--json", help="Print JSON instead of a table.")


@app.command("token")
def token(
    ctx: typer.Context,
    model: str | None = typer.Option(
        None, "--model", help="The model devices enrolled with it run."
    ),
    ttl: float = typer.Option(86400.0, "--ttl", help="Seconds until the token expires."),
    label: list[str] = typer.Option([], "--label", help="KEY=VALUE label for the device (repeat)."),
    uses: int = typer.Option(1, "--uses", min=1, help="Devices that may enroll with it."),
    as_json: bool = _json_opt(),
) -> None:
    """Create an enrollment token (one-time unless --uses N), printed on stdout."""
    labels = {}
    for item in label:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InputError(f"--label {item!r}: expected KEY=VALUE")
        labels[key] = value
    out = admin_client(ctx).create_token(model=model, ttl_s=ttl, labels=labels, uses=uses)
    if as_json:
        from edgeloop.cli._console import print_json

        print_json(out)
    else:
        typer.echo(out["token"])


def _labels(items: list[str]) -> dict[str, str]:
    labels = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InputError(f"--label {item!r}: expected KEY=VALUE")
        labels[key] = value
    return labels


@app.command("provision")
def provision(
    ctx: typer.Context,
    out: Path = typer.Option(..., "--out", help="Provisioning file to write (0600)."),
    device_url: str | None = typer.Option(
        None, "--device-url", help="The server URL devices use (default: --server)."
    ),
    root: Path | None = typer.Option(
        None,
        "--root",
        help="TUF root from the build machine's keys dir (default: the server's copy).",
    ),
    model: str | None = typer.Option(None, "--model", help="The model the device runs."),
    ttl: float = typer.Option(86400.0, "--ttl", help="Seconds until the token expires."),
    label: list[str] = typer.Option([], "--label", help="KEY=VALUE label for the device (repeat)."),
    uses: int = typer.Option(1, "--uses", min=1, help="Devices that may enroll with it."),
) -> None:
    """Write a device image's trust: TUF root, director key, server URL, CA, enrollment token.

    The agent pins it (`edgeloop agent --provision FILE`) and refuses enrollment answers that
    disagree with it. The CA is the group's --ca (the one this command trusted).
    """
    import json

    from edgeloop._io import read_bytes

    tuf_root = json.loads(read_bytes(root, "TUF root")) if root is not None else None
    prov = admin_client(ctx).provision(
        server_url=device_url,
        ca_pem=ca_pem(ctx),
        model=model,
        labels=_labels(label),
        ttl_s=ttl,
        uses=uses,
        tuf_root=tuf_root,
    )
    prov.save(out)
    version = prov.tuf_root.get("signed", {}).get("version")
    typer.echo(
        f"wrote {out} (0600): {prov.server_url}, TUF root v{version}, director key "
        f"{prov.director_keyid[:16]}, {'CA pinned' if prov.ca_pem else 'no CA (plain HTTP)'}"
    )


@app.command("devices")
def devices(
    ctx: typer.Context,
    version: str | None = typer.Option(None, "--version", help="MODEL@VERSION, or none."),
    hardware: str | None = typer.Option(None, "--hardware", help="Device profile name."),
    state: str | None = typer.Option(
        None, "--state", help="ok, degraded, failing, unknown, offline or revoked."
    ),
    label: str | None = typer.Option(None, "--label", help="KEY=VALUE, e.g. region=eu."),
    seen: str | None = typer.Option(
        None, "--seen", help="<10m: heard from within; >1d: not heard from for."
    ),
    page: int | None = typer.Option(None, "--page", help="Page of the filtered list (1...)."),
    per_page: int = typer.Option(100, "--per-page", help="Devices per page (at most 500)."),
    as_json: bool = _json_opt(),
) -> None:
    """List enrolled devices: hardware, agent, model version, last seen, health.

    With a filter or --page, the server filters, counts and pages (as the dashboard does)."""
    from edgeloop.cli._console import console, print_json, table

    filtered = any(v is not None for v in (version, hardware, state, label, seen, page))
    if label is not None and "=" not in label:
        raise InputError(f"--label {label!r}: expected KEY=VALUE, e.g. region=eu")
    if not 1 <= per_page <= 500:
        raise InputError(f"--per-page {per_page}: expected a whole number from 1 to 500")
    if page is not None and page < 1:
        raise InputError(f"--page {page}: expected a whole number from 1")
    result: dict[str, Any] | None = None
    if filtered:
        result = admin_client(ctx).find_devices(
            version=version,
            hardware=hardware,
            state=state,
            label=label,
            seen=seen,
            page=page or 1,
            per_page=per_page,
        )
        found = list(result["devices"])
    else:
        found = admin_client(ctx).devices()
    if as_json:
        print_json(result if result is not None else found)
        return

    def version_of(d: dict[str, Any]) -> str:
        inst = d.get("installed")
        return (
            f"{inst['model']}@{inst['version']} {inst.get('variant', '')}".strip() if inst else "-"
        )

    rows = [
        (
            d["device_id"],
            (d.get("profile") or {}).get("arch", "?"),
            d.get("agent_version") or "-",
            version_of(d),
            d.get("last_seen") or "-",
            d.get("state") or ("revoked" if d["revoked"] else d.get("health", "unknown")),
        )
        for d in found
    ]
    title = f"{len(rows)} device(s)"
    if result is not None:
        title = f"{result['matched']} device(s) match; page {result['page']} of {result['pages']}"
    table(title, ["device", "arch", "agent", "model", "last seen", "state"], rows)
    if result is not None:
        states = ", ".join(f"{k} {n}" for k, n in result["counts"]["state"].items())
        console.print(f"fleet: {result['total']} device(s): {states}", highlight=False)


@app.command("device")
def device(ctx: typer.Context, device_id: str = typer.Argument(..., help="Device id.")) -> None:
    """Show one device with its latest telemetry reports (JSON)."""
    from edgeloop.cli._console import print_json

    print_json(admin_client(ctx).device(device_id))


@app.command("revoke")
def revoke(ctx: typer.Context, device_id: str = typer.Argument(..., help="Device id.")) -> None:
    """Revoke a device: its requests are refused (403) from now on."""
    out = admin_client(ctx).revoke(device_id)
    typer.echo(f"revoked {out['device_id']}")


def _ref(ref: str) -> tuple[str, int]:
    model, sep, version = ref.partition("@")
    if not sep or not version.isdigit() or not model:
        raise InputError(f"{ref!r}: expected MODEL@VERSION, e.g. kws@3")
    return model, int(version)


@app.command("publish")
def publish(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="MODEL@VERSION from the registry."),
    desired: bool = typer.Option(
        False, "--desired", help="Also make it the fleet's desired version (moves the alias)."
    ),
) -> None:
    """Publish a registry version's bundles to the fleet's TUF repository."""
    model, version = _ref(ref)
    client = admin_client(ctx)
    out = client.publish(model, version)
    variants = ", ".join(v["variant"] for v in out["variants"])
    typer.echo(f"published {model}@{version}: {variants}")
    if desired:
        d = client.set_desired(model, version)
        typer.echo(f"{model}@{d['alias']} -> {d['version']}")


@app.command("desired")
def set_desired(
    ctx: typer.Context, ref: str = typer.Argument(..., help="MODEL@VERSION, already published.")
) -> None:
    """Set the version every device of a model should run (moves the registry alias)."""
    model, version = _ref(ref)
    d = admin_client(ctx).set_desired(model, version)
    typer.echo(f"{model}@{d['alias']} -> {d['version']}")


@app.command("releases")
def releases(
    ctx: typer.Context,
    model: str | None = typer.Option(None, "--model", help="Only this model."),
    as_json: bool = _json_opt(),
) -> None:
    """List published releases and their variants."""
    from edgeloop.cli._console import print_json, table

    found = admin_client(ctx).releases(model)
    if as_json:
        print_json(found)
        return
    rows = [
        (f"{r['model']}@{r['version']}", v["variant"], v["target"], v["length"], v["requires"])
        for r in found
        for v in r["variants"]
    ]
    table("releases", ["release", "variant", "target", "bytes", "requires"], rows)


# the simulator lives in its own module (device-side agents); registered here as `fleet simulate`
from edgeloop.cli.simulate import simulate as _simulate  # noqa: E402

app.command("simulate")(_simulate)
