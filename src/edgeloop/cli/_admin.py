"""The options every admin command group shares (``fleet``, ``rollout``, ``fleet simulate``).

The server is ``--server URL`` (default ``$EDGELOOP_SERVER``, else http://127.0.0.1:8700); the
token comes from ``--admin-token-file``, ``$EDGELOOP_ADMIN_TOKEN``, or ``DATA/admin-token``.
Only ``edgeloop.client`` (httpx) is imported: admin commands never load the server.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from edgeloop.client import AdminClient, RolloutClient

__all__ = ["admin_client", "admin_options", "admin_token", "rollout_client", "server"]


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


def admin_client(ctx: typer.Context) -> AdminClient:
    from edgeloop.client import AdminClient

    return AdminClient(server(ctx), admin_token(ctx))


def rollout_client(ctx: typer.Context) -> RolloutClient:
    from edgeloop.client import RolloutClient

    return RolloutClient(server(ctx), admin_token(ctx))
