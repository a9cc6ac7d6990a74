"""``edgeloop fleet``: administer a running fleet server over HTTP with the admin token.

The server is ``--server URL`` (default ``$EDGELOOP_SERVER``, else http://127.0.0.1:8700); the
token comes from ``--admin-token-file``, ``$EDGELOOP_ADMIN_TOKEN``, or ``DATA/admin-token``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import typer

from edgeloop.errors import AuthError, FleetError, InputError

app = typer.Typer(
    help="Administer a fleet: enrollment tokens, devices, releases.", no_args_is_help=True
)

DEFAULT_SERVER = "http://127.0.0.1:8700"


@app.callback()
def admin_options(
    ctx: typer.Context,
    server: str | None = typer.Option(
        None, "--server", help="Fleet server URL; default $EDGELOOP_SERVER."
    ),
    admin_token_file: Path | None = typer.Option(
        None, "--admin-token-file", help="File with the admin token; default DATA/admin-token."
    ),
    data: Path | None = typer.Option(
        None, "--data", help="The server's data dir (for its admin token)."
    ),
) -> None:
    """The options every admin command group shares (``fleet``, ``rollout``)."""
    ctx.obj = {"server": server, "token_file": admin_token_file, "data": data}


def server_url(opts: dict[str, Any], override: str | None = None) -> str:
    """``override``, else ``--server``, else ``$EDGELOOP_SERVER``, else the local default."""
    url = override or opts.get("server") or os.environ.get("EDGELOOP_SERVER") or DEFAULT_SERVER
    return str(url).rstrip("/")


def admin_token(opts: dict[str, Any]) -> str:
    path = opts.get("token_file")
    if path is None:
        env = os.environ.get("EDGELOOP_ADMIN_TOKEN")
        if env:
            return env.strip()
        from edgeloop.db import default_data_dir

        path = (opts.get("data") or default_data_dir()) / "admin-token"
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except OSError as e:
        raise AuthError(
            f"cannot read the admin token from {str(path)!r} ({e.strerror or e}); pass "
            "--admin-token-file or set $EDGELOOP_ADMIN_TOKEN"
        ) from e


def _call(ctx: typer.Context, method: str, path: str, body: Any = None) -> Any:
    import httpx

    opts = ctx.obj or {}
    base = server_url(opts)
    headers = {"Authorization": f"Bearer {admin_token(opts)}"}
    try:
        r = httpx.request(method, base + path, json=body, headers=headers, timeout=60.0)
    except httpx.HTTPError as e:
        raise FleetError(f"cannot reach the fleet server at {base}: {e}") from e
    if r.status_code >= 400:
        try:
            detail = r.json().get("detail", r.text)
        except ValueError:
            detail = r.text
        cls = AuthError if r.status_code in (401, 403) else FleetError
        raise cls(f"{method} {path} -> {r.status_code}: {detail}")
    return r.json()


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
    out = _call(
        ctx,
        "POST",
        "/v1/admin/tokens",
        {"model": model, "ttl_s": ttl, "labels": labels, "uses": uses},
    )
    if as_json:
        from edgeloop.cli._console import print_json

        print_json(out)
    else:
        typer.echo(out["token"])


@app.command("devices")
def devices(ctx: typer.Context, as_json: bool = _json_opt()) -> None:
    """List enrolled devices: hardware, agent, model version, last seen, health."""
    from edgeloop.cli._console import print_json, table

    found = _call(ctx, "GET", "/v1/admin/devices")["devices"]
    if as_json:
        print_json(found)
        return

    def version(d: dict[str, Any]) -> str:
        inst = d.get("installed")
        return (
            f"{inst['model']}@{inst['version']} {inst.get('variant', '')}".strip() if inst else "-"
        )

    rows = [
        (
            d["device_id"],
            (d.get("profile") or {}).get("arch", "?"),
            d.get("agent_version") or "-",
            version(d),
            d.get("last_seen") or "-",
            "revoked" if d["revoked"] else d.get("health", "unknown"),
        )
        for d in found
    ]
    table(
        f"{len(rows)} device(s)", ["device", "arch", "agent", "model", "last seen", "health"], rows
    )


@app.command("device")
def device(ctx: typer.Context, device_id: str = typer.Argument(..., help="Device id.")) -> None:
    """Show one device with its latest telemetry reports (JSON)."""
    from edgeloop.cli._console import print_json

    print_json(_call(ctx, "GET", f"/v1/admin/devices/{device_id}"))


@app.command("revoke")
def revoke(ctx: typer.Context, device_id: str = typer.Argument(..., help="Device id.")) -> None:
    """Revoke a device: its requests are refused (403) from now on."""
    out = _call(ctx, "POST", f"/v1/admin/devices/{device_id}/revoke")
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
    out = _call(ctx, "POST", "/v1/admin/releases", {"model": model, "version": version})
    variants = ", ".join(v["variant"] for v in out["variants"])
    typer.echo(f"published {model}@{version}: {variants}")
    if desired:
        d = _call(ctx, "PUT", f"/v1/admin/models/{model}/desired", {"version": version})
        typer.echo(f"{model}@{d['alias']} -> {d['version']}")


@app.command("desired")
def set_desired(
    ctx: typer.Context, ref: str = typer.Argument(..., help="MODEL@VERSION, already published.")
) -> None:
    """Set the version every device of a model should run (moves the registry alias)."""
    model, version = _ref(ref)
    d = _call(ctx, "PUT", f"/v1/admin/models/{model}/desired", {"version": version})
    typer.echo(f"{model}@{d['alias']} -> {d['version']}")


@app.command("releases")
def releases(
    ctx: typer.Context,
    model: str | None = typer.Option(None, "--model", help="Only this model."),
    as_json: bool = _json_opt(),
) -> None:
    """List published releases and their variants."""
    from edgeloop.cli._console import print_json, table

    path = "/v1/admin/releases" + (f"?model={model}" if model else "")
    found = _call(ctx, "GET", path)["releases"]
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
