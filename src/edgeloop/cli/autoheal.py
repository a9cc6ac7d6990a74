"""``edgeloop autoheal``: the unattended closed loop's policy (docs/autoheal.md).

``autoheal check POLICY`` validates a policy file and prints what it does; with ``--alert``
(a JSON file holding an alert's model, cohort and summary) it also prints the decision the
policy takes on that alert.

``autoheal pause|resume|status`` flip and read the kill switch, a row in the database
(``--db``, default ``$EDGELOOP_DB``), so every server process sees it; ``status`` also lists
the newest automatic actions (the audit log).
"""

from __future__ import annotations

import getpass
import json
import os
from pathlib import Path
from typing import Any

import typer

app = typer.Typer(help="Auto-heal: the closed loop as an unattended service.",
                  no_args_is_help=True)


def check(
    policy: Path = typer.Argument(..., help="Policy file (.yaml, .yml or .json)."),
    alert: Path | None = typer.Option(None, "--alert", help="JSON file with an alert "
                                      "({model, cohort, detail}): print the policy's decision."),
    json_out: bool = typer.Option(False, "--json", help="Print the policy (and decision) as "
                                  "JSON."),
) -> None:
    """Validate an auto-heal policy file; one line naming the key on the first error."""
    from edgeloop.cli._console import console, print_json
    from edgeloop.errors import FileError, InputError
    from edgeloop.loop import decide, load_policy

    pol = load_policy(policy)
    out: dict[str, object] = {"policy": pol.to_dict()}
    if alert is not None:
        try:
            raw = json.loads(alert.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            raise FileError(f"--alert {str(alert)!r}: expected a readable JSON file") from None
        if not isinstance(raw, dict) or not isinstance(raw.get("model"), str) \
                or not isinstance(raw.get("cohort", "*"), str) \
                or not isinstance(raw.get("detail", {}), dict):
            raise InputError(f"--alert {str(alert)!r}: expected {{\"model\": str, "
                             "\"cohort\": str, \"detail\": {...}}")
        out["decision"] = decide(pol, raw["model"], raw.get("cohort", "*"),
                                 raw.get("detail", {})).to_dict()
    if json_out:
        print_json(out)
        return

    def say(text: str) -> None:
        console.print(text, markup=False, highlight=False, soft_wrap=True)

    say(f"policy {policy}: ok, {len(pol.rules)} rule(s)")
    for r in pol.rules:
        cond = f" {r.metric}" + (f">{r.above:g}" if r.above is not None else "") + \
            (f"<{r.below:g}" if r.below is not None else "") if r.metric else ""
        say(f"  {r.name}: {r.action} models={','.join(r.models)} "
            f"cohorts={','.join(r.cohorts)} kinds={','.join(r.kinds)} "
            f"severity>={r.severity}{cond}")
    say(f"  budget: {pol.rounds} rounds, <= {pol.max_devices} devices, "
        f"<= {pol.max_minutes:g} min; gates: {'; '.join(pol.gates)}")
    say(f"  rollout: stages {','.join(f'{s:g}' for s in pol.stages)} %, soak {pol.soak_s:g} s")
    say(f"  limits: {pol.max_runs_per_day} runs/model/day, cool-down "
        f"{pol.cooldown_s:g} s after a failure; webhook: {pol.webhook_url or 'none'}")
    say("  federation: " + (f"deployment on the cohort's agents' SuperNodes (>= "
                            f"{pol.min_nodes} nodes, rounds time out after "
                            f"{pol.round_timeout_s:g} s)" if pol.federation == "deployment"
                            else "in-process over the cohort's feedback"))
    if "decision" in out:
        say(f"decision: {json.dumps(out['decision'])}")


app.command("check")(check)


_DB_HELP = "Database URL (sqlite:///file.db, postgresql+psycopg://...); default: $EDGELOOP_DB."


def _actor() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@cli:{os.getpid()}"


def _switch(db: str | None, paused: bool, reason: str, model: str | None) -> dict[str, Any]:
    from edgeloop.db import make_engine, upgrade, utcnow, write_session
    from edgeloop.fleet import (
        autoheal_paused_models,
        autoheal_state,
        set_autoheal_model_paused,
        set_autoheal_paused,
    )

    engine = make_engine(db)
    try:
        upgrade(engine)
        with write_session(engine) as s:
            if model is None:
                state = set_autoheal_paused(s, paused, actor=_actor(), reason=reason,
                                            now=utcnow()).to_dict()
            else:
                set_autoheal_model_paused(s, model, paused, actor=_actor(), reason=reason,
                                          now=utcnow())
                state = autoheal_state(s).to_dict()
            return {**state, "paused_models": autoheal_paused_models(s)}
    finally:
        engine.dispose()


_MODEL_HELP = ("Only this model's automatic runs (the switch a policy's pause rule sets); "
               "default: every model's (the kill switch).")


def pause(
    reason: str = typer.Option("", "--reason", help="Why (kept with the switch and logged)."),
    model: str | None = typer.Option(None, "--model", help=_MODEL_HELP),
    db: str | None = typer.Option(None, "--db", help=_DB_HELP),
    json_out: bool = typer.Option(False, "--json", help="Print the state as JSON."),
) -> None:
    """Kill switch: stop every server's automatic runs (a run already going finishes its step)."""
    _say_state(_switch(db, True, reason, model), json_out)


def resume(
    reason: str = typer.Option("", "--reason", help="Why (logged)."),
    model: str | None = typer.Option(None, "--model", help=_MODEL_HELP),
    db: str | None = typer.Option(None, "--db", help=_DB_HELP),
    json_out: bool = typer.Option(False, "--json", help="Print the state as JSON."),
) -> None:
    """Let the servers start automatic runs again."""
    _say_state(_switch(db, False, reason, model), json_out)


def status(
    db: str | None = typer.Option(None, "--db", help=_DB_HELP),
    model: str | None = typer.Option(None, "--model", help="Only this model's actions."),
    limit: int = typer.Option(20, "--limit", help="Newest actions to show (1..10000)."),
    json_out: bool = typer.Option(False, "--json", help="Print state and actions as JSON."),
) -> None:
    """The kill switch and the newest automatic actions (the audit log)."""
    from edgeloop.cli._console import console, print_json
    from edgeloop.db import make_engine, read_session, upgrade
    from edgeloop.errors import InputError
    from edgeloop.fleet import autoheal_actions, autoheal_paused_models, autoheal_state

    if not 1 <= limit <= 10_000:
        raise InputError(f"--limit {limit}: expected 1..10000")
    engine = make_engine(db)
    try:
        upgrade(engine)
        with read_session(engine) as s:
            state = {**autoheal_state(s).to_dict(),
                     "paused_models": autoheal_paused_models(s)}
            actions = autoheal_actions(s, model=model, limit=limit)
    finally:
        engine.dispose()
    if json_out:
        print_json({"state": state, "actions": actions})
        return
    _say_state(state, False)
    for a in actions:
        where = " ".join(f"{k}={a[k]}" for k in ("model", "cohort", "job_id") if a[k] is not None)
        console.print(f"  {a['at']}  {a['action']:<12} {where}  by {a['actor']}  "
                      f"{json.dumps(a['detail'])}", markup=False, highlight=False,
                      soft_wrap=True)


def _say_state(state: dict[str, Any], json_out: bool) -> None:
    from edgeloop.cli._console import console, print_json

    if json_out:
        print_json(state)
        return
    word = "paused" if state["paused"] else "running"
    why = f": {state['reason']}" if state["reason"] else ""
    console.print(f"auto-heal {word} (since {state['updated_at']}, by {state['actor']}){why}",
                  markup=False, highlight=False, soft_wrap=True)
    for m, p in (state.get("paused_models") or {}).items():
        console.print(f"  model {m} paused (since {p['at']}, by {p['actor']}): {p['reason']}",
                      markup=False, highlight=False, soft_wrap=True)


app.command("pause")(pause)
app.command("resume")(resume)
app.command("status")(status)


def worker(
    policy: Path = typer.Argument(..., help="Policy file (.yaml, .yml or .json)."),
    server_url: str = typer.Option("http://127.0.0.1:8700", "--server", help="Fleet server URL."),
    ca: Path | None = typer.Option(None, "--ca", envvar="EDGELOOP_CA", help="PEM CA "
                                   "certificate of a TLS server (trusted alone; default: the "
                                   "system's CAs; the server's own child on https://127.0.0.1 "
                                   "without --ca does not verify)."),
    db: str | None = typer.Option(None, "--db", help=_DB_HELP),
    data: Path = typer.Option(..., "--data", help="The server's data dir: admin-token, keys/ "
                              "(release keys), tuf/ (the repository), registry blobs."),
    keys: Path | None = typer.Option(None, "--keys", help="Release keys (release.pem, "
                                     "fleet.pem, fleet.pub.pem, root.json); default DATA/keys."),
    registry_data: Path | None = typer.Option(None, "--registry-data", help="Registry data "
                                              "directory; default DATA."),
    dataset: str = typer.Option(..., "--dataset", help="Built-in dataset or data file whose "
                                "train split the cohort's simulated devices hold as labelled "
                                "feedback."),
    devices: int = typer.Option(10, "--devices", help="Simulated devices in a cohort (capped "
                                "by the policy's budget.max_devices)."),
    severity: float = typer.Option(1.0, "--severity", help="The cohort's input shift (0..3)."),
    label_share: float = typer.Option(0.5, "--label-share", help="Share of predictions that "
                                      "get a delayed label."),
    samples: int | None = typer.Option(None, "--samples", help="Use at most this many samples "
                                       "of the data set."),
    name: str | None = typer.Option(None, "--name", help="This worker's name in the jobs, "
                                    "runs and audit log (default autoheal@HOST:PID)."),
    lease: float = typer.Option(60.0, "--lease", help="Seconds a silent worker keeps its run "
                                "before another takes it over (renewed every third)."),
    idle: float = typer.Option(5.0, "--idle", help="Seconds between looks for a job."),
    wait: float | None = typer.Option(None, "--wait", help="Seconds to wait for a rollout's "
                                      "end (0: start it and finish the job); default the "
                                      "policy's budget.max_minutes."),
    once: bool = typer.Option(False, "--once", help="One pass, then exit."),
    parent_pid: int | None = typer.Option(None, "--parent-pid", help="Exit when this process "
                                          "is gone (the server that started this worker)."),
    superlink_cert: Path | None = typer.Option(None, "--superlink-cert", help="Policy "
                                               "federation deployment: the fleet server's TLS "
                                               "certificate, for the heal's SuperLink."),
    superlink_key: Path | None = typer.Option(None, "--superlink-key", help="Its private key."),
    superlink_ca: Path | None = typer.Option(None, "--superlink-ca", help="The fleet's CA "
                                             "(the agents pin it)."),
    superlink_state: Path | None = typer.Option(None, "--superlink-state", help="Directory of "
                                                "the heal runs' SuperLinks and checkpoints "
                                                "(default DATA/autoheal-federation)."),
    superlink_host: str = typer.Option("127.0.0.1", "--superlink-host", help="Address the "
                                       "SuperLink listens on."),
    superlink_port: int = typer.Option(0, "--superlink-port", help="Its port (0: a free one)."),
    superlink_advertise: str | None = typer.Option(None, "--superlink-advertise", help="HOST:PORT "
                                                   "the agents connect to (default: host:port)."),
) -> None:
    """The unattended worker: claim finetune jobs under POLICY and heal them, durably
    (``edgeloop server --auto-heal POLICY`` starts one)."""
    import math
    import signal
    import socket
    import ssl
    import threading

    import numpy as np

    from edgeloop.cli._console import console, err_console
    from edgeloop.client import read_admin_token
    from edgeloop.data import load_dataset
    from edgeloop.db import upgrade
    from edgeloop.errors import InputError
    from edgeloop.loop import (
        AutohealWorker,
        DatasetCohort,
        FleetAccess,
        SuperLinkAccess,
        load_policy,
    )

    pol = load_policy(policy)
    if not (math.isfinite(idle) and 0 < idle <= 86_400):
        raise InputError(f"--idle {idle}: expected seconds > 0 and at most 86400")
    if not (math.isfinite(lease) and 1 <= lease <= 86_400):
        raise InputError(f"--lease {lease}: expected seconds from 1 to 86400")
    tls = (superlink_cert, superlink_key, superlink_ca)
    link_access = None
    if any(p is not None for p in tls):
        if any(p is None for p in tls):
            raise InputError("--superlink-cert, --superlink-key and --superlink-ca go together")
        assert superlink_cert is not None and superlink_key is not None
        assert superlink_ca is not None
        link_access = SuperLinkAccess(superlink_cert, superlink_key, superlink_ca,
                                      superlink_state or data / "autoheal-federation",
                                      host=superlink_host, port=superlink_port,
                                      advertise=superlink_advertise)
    elif pol.federation == "deployment":
        raise InputError(f"policy {policy}: federation deployment needs --superlink-cert, "
                         "--superlink-key and --superlink-ca (the fleet's TLS and CA)")
    keys = keys or data / "keys"
    for what, path in (("--data", data), ("--keys", keys), ("--data tuf", data / "tuf")):
        if not path.is_dir():
            raise InputError(f"{what} {str(path)!r}: expected an existing directory")
    db_url = db or os.environ.get("EDGELOOP_DB") or f"sqlite:///{data / 'edgeloop.db'}"
    train = load_dataset(dataset, "train")
    if not isinstance(train.x, np.ndarray) or train.y is None:
        raise InputError(f"--dataset {dataset!r}: expected array inputs with labels")
    x, y = train.x, np.asarray(train.y)
    n_dev = min(devices, pol.max_devices)
    if samples is not None:
        if samples < 4 * n_dev:
            raise InputError(f"--samples {samples}: expected at least 4 per device "
                             f"({4 * n_dev})")
        keep = np.random.default_rng(0).permutation(len(y))[:samples]
        x, y = x[keep], y[keep]
    cohort = DatasetCohort(x, y, devices_n=n_dev, severity=severity, label_share=label_share)
    if not server_url.startswith(("http://", "https://")):
        raise InputError(f"--server {server_url!r}: expected an http:// or https:// URL")
    if ca is not None:
        from edgeloop._io import read_bytes
        from edgeloop.protocol import tls_context

        if not server_url.startswith("https://"):
            raise InputError(f"--ca goes with an https:// --server, got {server_url!r}")
        trust: ssl.SSLContext | bool = tls_context(
            read_bytes(ca, "CA certificate").decode("ascii", "replace"))
    else:  # the server's own child on loopback: the traffic never leaves the machine
        trust = not server_url.startswith("https://127.0.0.1")
    upgrade(db_url)
    fleet = FleetAccess(server_url, read_admin_token(None, data), db_url,
                        registry_data or data, keys=keys, repo=data / "tuf", verify=trust,
                        superlink=link_access)
    unreachable = fleet.probe()  # a certificate that does not verify: one line, exit now
    if unreachable is not None:
        err_console.print(f"autoheal worker: {unreachable} (going on: it may be starting)",
                          markup=False, highlight=False, soft_wrap=True)
    me = name or f"autoheal@{socket.gethostname()}:{os.getpid()}"
    if wait is not None and not (math.isfinite(wait) and 0 <= wait <= 86_400):
        raise InputError(f"--wait {wait}: expected seconds from 0 to 86400")
    plan = pol.heal_plan() if wait is None else pol.heal_plan(wait_s=wait)
    w = AutohealWorker(pol, fleet, lambda job: cohort, name=me, lease_s=lease, plan=plan,
                       on_step=lambda step, text: console.print(
                           f"{step:<9} {text}", markup=False, highlight=False, soft_wrap=True))
    stop = threading.Event()

    def quit_now(why: str) -> None:
        # mid-run: give the run up (its lease ends now) and exit; the next worker resumes it
        err_console.print(f"autoheal worker: {why}; exiting", markup=False, highlight=False)
        try:
            w.abandon()
        finally:
            os._exit(0)

    signal.signal(signal.SIGTERM, lambda *_: quit_now("terminated"))

    def watch_parent() -> None:
        while parent_pid is not None and not stop.wait(1.0):
            if os.getppid() != parent_pid:
                quit_now("the server is gone")

    threading.Thread(target=watch_parent, daemon=True).start()

    def said(res: Any) -> None:
        console.print(f"job {res.job_id}: {'healed' if res.ok else 'not healed'}: "
                      f"{res.reason}", markup=False, highlight=False, soft_wrap=True)

    def failed(e: Exception) -> None:
        err_console.print(f"autoheal worker: {type(e).__name__}: {e}", markup=False,
                          highlight=False, soft_wrap=True)

    console.print(f"autoheal worker {me}: policy {policy}, lease {lease:g} s")
    try:
        if once:
            res = w.step()
            if res is not None:
                said(res)
        else:
            w.run(stop, idle_s=idle, on_result=said, on_error=failed)
    finally:
        w.close()


app.command("worker")(worker)
