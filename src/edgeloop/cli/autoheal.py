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


def _switch(db: str | None, paused: bool, reason: str) -> dict[str, Any]:
    from edgeloop.db import make_engine, upgrade, utcnow, write_session
    from edgeloop.fleet import set_autoheal_paused

    engine = make_engine(db)
    try:
        upgrade(engine)
        with write_session(engine) as s:
            return set_autoheal_paused(s, paused, actor=_actor(), reason=reason,
                                       now=utcnow()).to_dict()
    finally:
        engine.dispose()


def pause(
    reason: str = typer.Option("", "--reason", help="Why (kept with the switch and logged)."),
    db: str | None = typer.Option(None, "--db", help=_DB_HELP),
    json_out: bool = typer.Option(False, "--json", help="Print the state as JSON."),
) -> None:
    """Kill switch: stop every server's automatic runs (a run already going finishes its step)."""
    _say_state(_switch(db, True, reason), json_out)


def resume(
    reason: str = typer.Option("", "--reason", help="Why (logged)."),
    db: str | None = typer.Option(None, "--db", help=_DB_HELP),
    json_out: bool = typer.Option(False, "--json", help="Print the state as JSON."),
) -> None:
    """Let the servers start automatic runs again."""
    _say_state(_switch(db, False, reason), json_out)


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
    from edgeloop.fleet import autoheal_actions, autoheal_state

    if not 1 <= limit <= 10_000:
        raise InputError(f"--limit {limit}: expected 1..10000")
    engine = make_engine(db)
    try:
        upgrade(engine)
        with read_session(engine) as s:
            state = autoheal_state(s).to_dict()
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


app.command("pause")(pause)
app.command("resume")(resume)
app.command("status")(status)
