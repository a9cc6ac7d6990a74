"""``edgeloop server``: run the fleet server (FastAPI on uvicorn)."""

from __future__ import annotations

from pathlib import Path

import typer


def server(
    db: str | None = typer.Option(
        None,
        "--db",
        help="Database URL (sqlite:///fleet.db, postgresql+psycopg://...); "
        "default: $EDGELOOP_DB, else SQLite in the data dir.",
    ),
    data: Path | None = typer.Option(
        None,
        "--data",
        help="Data dir: keys, TUF repository, registry blobs; "
        "default: $EDGELOOP_DATA or the user data dir.",
    ),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(8700, "--port", help="TCP port to listen on."),
    admin_token_file: Path | None = typer.Option(
        None,
        "--admin-token-file",
        help="File holding the admin token (default DATA/admin-token; "
        "created with a fresh token if missing).",
    ),
    keys: Path | None = typer.Option(
        None,
        "--keys",
        help="The server's release keys (default DATA/keys), from `edgeloop keys online` "
        "on the build machine.",
    ),
    create_release_keys: bool = typer.Option(
        False,
        "--create-release-keys",
        help="With no keys yet, make every key here, the offline root, targets and release "
        "keys included (a trial server; a fleet keeps them on the build machine).",
    ),
    alias: str = typer.Option(
        "production", "--alias", help="Registry alias that names each model's desired version."
    ),
    poll_interval: float = typer.Option(
        60.0, "--poll-interval", help="Seconds between device check-ins."
    ),
    monitor_window: float = typer.Option(
        3600.0, "--monitor-window", help="Seconds of device sketches each evaluation merges."
    ),
    monitor_interval: float = typer.Option(
        300.0, "--monitor-interval", help="Seconds between evaluations (0: only when asked)."
    ),
    monitor_webhook: str | None = typer.Option(
        None, "--monitor-webhook", help="URL that monitoring alerts are POSTed to."
    ),
    monitor_pause_rollouts: bool = typer.Option(
        False, "--monitor-pause-rollouts", help="A raised alert pauses the model's rollouts."
    ),
    monitor_rollback: bool = typer.Option(
        False, "--monitor-rollback",
        help="A raised alert rolls back the model's active rollouts to the alerting version.",
    ),
    monitor_finetune: bool = typer.Option(
        False, "--monitor-finetune",
        help="A raised alert queues a fine-tuning job (edgeloop monitor jobs) for its cohort.",
    ),
    workers: int = typer.Option(
        1,
        "--workers",
        min=1,
        help="Server processes on one port and one database (PostgreSQL for more than one; "
        "SQLite works, one writer at a time; docs/scale.md).",
    ),
    log_level: str = typer.Option("warning", "--log-level", help="uvicorn's log level."),
    require_agent_build: str | None = typer.Option(
        None,
        "--require-agent-build",
        help="Comma-separated sha256 hashes of agent builds allowed to enroll and check in "
        "(edgeloop.agent.package_build_hash() on a device gives its own); default: any build.",
    ),
    tls_cert: Path | None = typer.Option(
        None, "--tls-cert", help="Serve HTTPS with this PEM certificate (chain)."
    ),
    tls_key: Path | None = typer.Option(
        None, "--tls-key", help="The certificate's PEM private key (with --tls-cert)."
    ),
) -> None:
    """Run the fleet server: enrollment, assignments, TUF repository, telemetry, admin API."""
    import os

    import uvicorn

    from edgeloop.cli._console import console, err_console
    from edgeloop.db import default_data_dir
    from edgeloop.errors import InputError
    from edgeloop.fleet import (
        SETTINGS_ENV,
        FleetSettings,
        create_app,
        prepare_data_dir,
        settings_to_env,
    )

    if (tls_cert is None) != (tls_key is None):
        raise InputError("--tls-cert and --tls-key go together: give both, or neither")
    for path in (tls_cert, tls_key):
        if path is not None and not path.is_file():
            raise InputError(f"TLS file {str(path)!r} does not exist")
    certfile = None if tls_cert is None else str(tls_cert)
    keyfile = None if tls_key is None else str(tls_key)
    scheme = "https" if certfile else "http"
    data_dir = data or default_data_dir()
    settings = FleetSettings(
        db_url=db or os.environ.get("EDGELOOP_DB") or f"sqlite:///{data_dir / 'edgeloop.db'}",
        data_dir=data_dir,
        host=host,
        port=port,
        admin_token_file=admin_token_file,
        keys_dir=keys,
        alias=alias,
        poll_interval_s=poll_interval,
        agent_builds=tuple(b for b in (require_agent_build or "").split(",") if b.strip()),
        monitor_window_s=monitor_window,
        monitor_interval_s=monitor_interval,
        monitor_webhook_url=monitor_webhook,
        monitor_pause_rollouts=monitor_pause_rollouts,
        monitor_rollback=monitor_rollback,
        monitor_finetune_jobs=monitor_finetune,
        create_release_keys=create_release_keys,
    )
    secrets = prepare_data_dir(settings)
    for path in secrets.created:
        console.print(f"created {path}")
    if settings.keys_path in secrets.created:
        err_console.print(
            f"warning: {settings.keys_path} holds the offline root, targets and release keys "
            "(--create-release-keys): a trial server; a fleet keeps them on the build machine "
            "(docs/security.md)",
            markup=False,
            highlight=False,
            soft_wrap=True,  # one line, whatever the terminal's width
        )
    console.print(f"admin token: {settings.admin_token_path} (0600)")
    console.print(f"director key: {settings.director_path} (0600)")
    console.print(f"release keys: {settings.keys_path}")
    console.print(
        f"fleet server on {scheme}://{host}:{port} (OpenAPI at /docs, metrics at /metrics)"
    )
    if workers == 1:
        uvicorn.run(
            create_app(settings),
            host=host,
            port=port,
            log_level=log_level,
            ssl_certfile=certfile,
            ssl_keyfile=keyfile,
        )
        return
    os.environ[SETTINGS_ENV] = settings_to_env(settings)
    uvicorn.run(
        "edgeloop.fleet:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        ssl_certfile=certfile,
        ssl_keyfile=keyfile,
    )


if __name__ == "__main__":  # ``python -m edgeloop.cli.server``: the command without the app
    typer.run(server)
