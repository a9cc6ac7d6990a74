"""The options every admin command group shares (``fleet``, ``rollout``, ``fleet simulate``).

The server is ``--server URL`` (default ``$EDGELOOP_SERVER``, else http://127.0.0.1:8700); the
token comes from ``--admin-token-file``, ``$EDGELOOP_ADMIN_TOKEN``, or ``DATA/admin-token``;
``--ca`` (``$EDGELOOP_CA``) pins the CA of a server that runs TLS.
Only ``edgeloop.client`` (httpx) is imported: admin commands never load the server.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from edgeloop.client import AdminClient, RolloutClient

__all__ = [
    "admin_client",
    "admin_options",
    "admin_token",
    "ca_pem",
    "rollout_client",
    "server",
    "verify",
]


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
    ca: Path | None = typer.Option(
        None,
        "--ca",
        envvar="EDGELOOP_CA",
        help="PEM CA certificate of a TLS server (trusted alone; default: the system's CAs).",
    ),
) -> None:
    """The options every admin command group shares (``fleet``, ``rollout``)."""
    ctx.obj = {"server": server, "token_file": admin_token_file, "data": data, "ca": ca}


def _opts(ctx: typer.Context) -> dict[str, Any]:
    return dict(ctx.obj or {})


def server(ctx: typer.Context, override: str | None = None) -> str:
    """``override``, else the group's ``--server``, else ``$EDGELOOP_SERVER``, else local."""
    from edgeloop.client import server_url

    return server_url(override, _opts(ctx).get("server"))


def admin_token(ctx: typer.Context, override: str | None = None) -> str:
    """``override``, else the token as the group's options find it."""
    if override:
        return override
    from edgeloop.client import read_admin_token

    opts = _opts(ctx)
    return read_admin_token(opts.get("token_file"), opts.get("data"))


def ca_pem(ctx: typer.Context) -> str | None:
    """The text of the group's ``--ca`` file, if one was given."""
    path = _opts(ctx).get("ca")
    if path is None:
        return None
    from edgeloop._io import read_bytes

    return read_bytes(path, "CA certificate").decode("ascii", "replace")


def verify(ctx: typer.Context) -> ssl.SSLContext | bool:
    """TLS trust for admin requests: the ``--ca`` alone, else the system's CAs."""
    pem = ca_pem(ctx)
    if pem is None:
        return True
    from edgeloop.protocol import tls_context

    return tls_context(pem)


def admin_client(ctx: typer.Context) -> AdminClient:
    from edgeloop.client import AdminClient

    return AdminClient(server(ctx), admin_token(ctx), verify=verify(ctx))


def rollout_client(ctx: typer.Context) -> RolloutClient:
    from edgeloop.client import RolloutClient

    return RolloutClient(server(ctx), admin_token(ctx), verify=verify(ctx))
