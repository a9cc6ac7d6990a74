"""``edgeloop server``: run the fleet server (FastAPI on uvicorn)."""

from __future__ import annotations

import subprocess
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
    auto_heal: Path | None = typer.Option(
        None, "--auto-heal",
        help="Auto-heal policy file: start an unattended worker process that heals the "
        "finetune jobs alerts queue under it (docs/autoheal.md).",
    ),
    auto_heal_dataset: str | None = typer.Option(
        None, "--auto-heal-dataset",
        help="With --auto-heal: the labelled data set the cohort's simulated devices hold as "
        "delayed feedback.",
    ),
    auto_heal_devices: int = typer.Option(
        10, "--auto-heal-devices", help="With --auto-heal: simulated devices per cohort."
    ),
    auto_heal_severity: float = typer.Option(
        1.0, "--auto-heal-severity", help="With --auto-heal: the cohort's input shift (0..3)."
    ),
    auto_heal_wait: float | None = typer.Option(
        None, "--auto-heal-wait",
        help="With --auto-heal: seconds a run waits for its rollout's end (0: start it and "
        "finish the job); default the policy's budget.max_minutes.",
    ),
    auto_heal_lease: float = typer.Option(
        60.0, "--auto-heal-lease",
        help="With --auto-heal: seconds before a dead worker's run is taken over.",
    ),
    auto_heal_superlink_ca: Path | None = typer.Option(
        None, "--auto-heal-superlink-ca",
        help="With --auto-heal and a policy whose federation is deployment: the fleet's CA "
        "(the agents pin it); the heal's SuperLink serves --tls-cert and --tls-key.",
    ),
) -> None:
    """Run the fleet server: enrollment, assignments, TUF repository, telemetry, admin API."""
    import os

    from edgeloop.cli._console import console, err_console
    from edgeloop.db import default_data_dir
    from edgeloop.errors import InputError
    from edgeloop.fleet import FleetSettings, prepare_data_dir

    if auto_heal is not None:
        from edgeloop.loop import load_policy

        pol = load_policy(auto_heal)  # a bad policy stops the server before it starts
        if auto_heal_dataset is None:
            raise InputError("--auto-heal needs --auto-heal-dataset (the cohort's feedback)")
        if pol.federation == "deployment" and (auto_heal_superlink_ca is None
                                               or tls_cert is None):
            raise InputError(f"--auto-heal {str(auto_heal)!r}: federation deployment needs "
                             "--tls-cert, --tls-key and --auto-heal-superlink-ca (the "
                             "SuperLink's TLS and the CA the agents pin)")
    elif auto_heal_dataset is not None:
        raise InputError("--auto-heal-dataset goes with --auto-heal POLICY")
    if auto_heal_superlink_ca is not None and (auto_heal is None
                                               or not auto_heal_superlink_ca.is_file()):
        raise InputError(f"--auto-heal-superlink-ca {str(auto_heal_superlink_ca)!r}: expected "
                         "the PEM file of the fleet's CA, with --auto-heal POLICY")
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
    healer = None
    if auto_heal is not None:
        assert auto_heal_dataset is not None
        link = None if auto_heal_superlink_ca is None or tls_cert is None or tls_key is None \
            else (tls_cert, tls_key, auto_heal_superlink_ca)
        healer = _start_autoheal(auto_heal, settings, scheme, auto_heal_dataset,
                                 auto_heal_devices, auto_heal_severity, auto_heal_lease,
                                 auto_heal_wait, link)
        console.print(f"auto-heal worker (pid {healer.pid}) under policy {auto_heal}")
    try:
        _serve(settings, workers, log_level, certfile, keyfile)
    finally:
        if healer is not None:
            healer.terminate()
            try:
                healer.wait(timeout=30)
            except Exception:
                healer.kill()


def _start_autoheal(policy: Path, settings: object, scheme: str, dataset: str, devices: int,
                    severity: float, lease: float, wait: float | None,
                    superlink: tuple[Path, Path, Path] | None = None,
                    ) -> subprocess.Popen[bytes]:
    """The auto-heal worker (``edgeloop autoheal worker``) as a child process, not a thread:
    the fine-tune, re-fit and packing are CPU-bound Python that would hold the GIL against the
    server's requests, and a crash in them must not take the server down. It exits when this
    server is gone (``--parent-pid``); its run's lease then expires and the next worker resumes
    it."""
    import os
    import sys

    from edgeloop.fleet import FleetSettings

    assert isinstance(settings, FleetSettings)
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    cmd = [sys.executable, "-m", "edgeloop", "autoheal", "worker", str(policy),
           "--server", f"{scheme}://{host}:{settings.port}", "--db", settings.db_url,
           "--data", str(settings.data_dir), "--keys", str(settings.keys_path),
           "--registry-data", str(settings.registry_path), "--dataset", dataset,
           "--devices", str(devices),
           "--severity", str(severity), "--lease", str(lease), "--parent-pid", str(os.getpid()),
           *([] if wait is None else ["--wait", str(wait)])]
    if superlink is not None:  # the heal's SuperLink: this server's TLS, the agents' CA
        cmd += ["--superlink-cert", str(superlink[0].resolve()), "--superlink-key",
                str(superlink[1].resolve()), "--superlink-ca", str(superlink[2].resolve())]
    return subprocess.Popen(cmd)


def _serve(settings: object, workers: int, log_level: str, certfile: str | None,
           keyfile: str | None) -> None:
    import os

    import uvicorn

    from edgeloop.fleet import SETTINGS_ENV, FleetSettings, create_app, settings_to_env

    assert isinstance(settings, FleetSettings)
    host, port = settings.host, settings.port
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
