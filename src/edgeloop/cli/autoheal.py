"""``edgeloop autoheal``: the unattended closed loop's policy (docs/autoheal.md).

``autoheal check POLICY`` validates a policy file and prints what it does; with ``--alert``
(a JSON file holding an alert's model, cohort and summary) it also prints the decision the
policy takes on that alert.
"""

from __future__ import annotations

import json
from pathlib import Path

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
