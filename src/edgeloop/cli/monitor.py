"""``edgeloop monitor``: drift, accuracy and alerts of the fleet's versions, from the server.

Talks to the fleet server's admin API through ``edgeloop.client`` only (no server code is
imported): ``--server``, and the admin token as ``edgeloop fleet`` finds it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from edgeloop.cli._admin import admin_options, admin_token, server

JOB_STATES = ("queued", "running", "succeeded", "failed")  # as the server's monitor_jobs
JOB_KINDS = ("finetune",)

app = typer.Typer(
    help="Monitoring: alerts, drift and accuracy reports per version and cohort.",
    no_args_is_help=True,
)
app.callback()(admin_options)


def _client(ctx: typer.Context) -> Any:
    from edgeloop.client import MonitorClient

    return MonitorClient(server(ctx), admin_token(ctx))


def _num(v: Any) -> str:
    return "-" if v is None else f"{v:.3g}"


@app.command("status")
def status(
    ctx: typer.Context,
    target: str | None = typer.Argument(None, help="MODEL or MODEL@VERSION; default: all."),
    evaluate: bool = typer.Option(False, "--evaluate", help="Evaluate now before showing."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Alerts (active first) and the latest alert events."""
    from edgeloop.cli._console import console, print_json, table
    from edgeloop.client import parse_target

    model, version = (None, None)
    if target:
        model, version = parse_target(target) if "@" in target else (target, None)
    client = _client(ctx)
    if evaluate:
        client.evaluate(model, version)
    st = client.status(model, version)
    if as_json:
        print_json(st)
        return
    rows = [
        (f"{a['model']}@{a['version']}", a["cohort"], "ACTIVE" if a["active"] else "clear",
         a["since"] or "-", ", ".join(a["detail"].get("drifted", [])),
         _num(a["detail"].get("metrics", {}).get("drift_psi_max")),
         _num(a["detail"].get("metrics", {}).get("est_accuracy")))
        for a in st["alerts"]
    ]
    trends = [
        (f"{d['model']}@{d['version']}", d["cohort"], str(len(d["buckets"])),
         _change(d["buckets"], "error_rate", 4), _change(d["buckets"], "p99_ms", 1),
         f"{d['selftest_failures']:g}", ", ".join(d["degrading"]) or "-")
        for d in st.get("degradation", [])
    ]
    if trends:
        table("degradation (first -> last window)",
              ["version", "cohort", "windows", "error rate", "p99 ms", "self-test fails",
               "worse"], trends)
    if not rows:
        console.print("no monitoring results yet", highlight=False)
        return
    table("alerts", ["version", "cohort", "state", "since", "drifted", "psi max", "est acc"],
          rows)
    if st["events"]:
        table("events", ["at", "version", "cohort", "event"],
              [(e["at"], f"{e['model']}@{e['version']}", e["cohort"], e["event"])
               for e in st["events"][:10]])


def _change(buckets: list[dict[str, Any]], key: str, digits: int) -> str:
    def fmt(v: float | None) -> str:
        return "-" if v is None else f"{v:.{digits}f}"

    first, last = buckets[0].get(key), buckets[-1].get(key)
    return fmt(first) if len(buckets) == 1 else f"{fmt(first)} -> {fmt(last)}"


@app.command("report")
def report(
    ctx: typer.Context,
    target: str = typer.Argument(..., help="MODEL@VERSION"),
    cohort: str | None = typer.Option(None, "--cohort", help="LABEL=VALUE; default: all."),
    since: str | None = typer.Option(None, "--since", help="ISO time or 30m, 6h, 2d (1d)."),
    html: Path | None = typer.Option(None, "--html", help="Write the HTML report here."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """The latest drift tests and accuracy of one version and cohort; ``--html`` writes the
    report page (plots over time per feature and per cohort)."""
    from edgeloop._io import atomic_write_text
    from edgeloop.cli._console import console, print_json, table
    from edgeloop.client import parse_target

    model, version = parse_target(target)
    client = _client(ctx)
    if html is not None:
        text = client.report_html(model, version, cohort=cohort, since=since)
        atomic_write_text(html, text)
        console.print(f"wrote {html}", highlight=False)
        return
    data = client.report(model, version, cohort=cohort, since=since)
    if as_json:
        print_json(data)
        return
    latest = data.get("latest")
    console.print(f"{model}@{version} cohort {data['cohort']}: "
                  f"{len([e for e in data['evaluations'] if e['cohort'] == data['cohort']])} "
                  f"evaluation(s) since {data['since']}", highlight=False)
    if latest is None:
        return
    rep, m = latest["report"], latest["metrics"]
    console.print(f"latest {latest['at']}: {rep.get('devices', 0)} device(s), "
                  f"{rep.get('n', 0):.0f} rows; est accuracy {_num(m.get('est_accuracy'))}, "
                  f"realized {_num(m.get('realized_accuracy'))}", highlight=False)
    rows = [(name, "DRIFT" if t.get("drifted") else "", _num(t.get("psi")), _num(t.get("js")),
             _num(t.get("wasserstein")), _num(t.get("p_adj")))
            for name, t in rep.get("features", {}).items()]
    table("tests", ["feature", "", "psi", "js", "wasserstein", "p (BH)"], rows)


@app.command("jobs")
def jobs(
    ctx: typer.Context,
    state: str | None = typer.Option(
        None, "--state", help="queued, running, succeeded or failed; default: all."),
    kind: str | None = typer.Option(None, "--kind", help="Job kind (finetune); default: all."),
    model: str | None = typer.Option(None, "--model", help="Only this model's jobs."),
    limit: int = typer.Option(50, "--limit", min=1, max=1000, help="At most this many."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Jobs raised alerts queued (fine-tuning for a cohort), newest first; a worker claims
    and finishes them through the API (``MonitorClient.claim_job`` / ``finish_job``)."""
    from edgeloop.cli._console import console, print_json, table
    from edgeloop.errors import InputError

    if state is not None and state not in JOB_STATES:
        raise InputError(f"--state {state!r}: expected one of {', '.join(JOB_STATES)}")
    if kind is not None and kind not in JOB_KINDS:
        raise InputError(f"--kind {kind!r}: expected one of {', '.join(JOB_KINDS)}")
    found = _client(ctx).jobs(kind=kind, state=state, model=model, limit=limit)
    if as_json:
        print_json(found)
        return
    if not found:
        console.print("no monitoring jobs", highlight=False)
        return
    table("monitoring jobs", ["id", "kind", "state", "version", "cohort", "created",
                              "worker", "attempts", "reason"],
          [(str(j["id"]), j["kind"], j["state"], f"{j['model']}@{j['version']}", j["cohort"],
            j["created_at"], j["worker"] or "-", str(j["attempts"]), j["reason"])
           for j in found])
