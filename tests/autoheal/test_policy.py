"""The auto-heal policy: validation (one line naming the key), decisions, limits, the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from edgeloop.errors import FileError, InputError
from edgeloop.loop import check_limits, decide, load_policy, parse_policy

GOOD: dict[str, Any] = {
    "version": 1,
    "rules": [
        {"name": "broken", "match": {"kinds": ["quality"]}, "action": "notify"},
        {"name": "kws", "match": {"models": ["kws*"], "kinds": ["drift"],
                                  "severity": "warning"}, "action": "heal"},
        {"name": "floor", "match": {"metric": "est_accuracy", "below": 0.6},
         "action": "pause"},
    ],
    "budget": {"rounds": 3, "max_devices": 20, "max_minutes": 30},
    "gates": ["error_rate<0.05", "est_accuracy>=baseline-0.02"],
    "rollout": {"stages": [25, 100], "soak_s": 30},
    "webhook": {"url": "http://127.0.0.1:9/hook", "timeout_s": 2},
    "limits": {"max_runs_per_day": 2, "cooldown_after_failure_s": 600},
}


def _with(path: str, value: Any) -> dict[str, Any]:
    data = json.loads(json.dumps(GOOD))
    *head, last = path.split(".")
    node: Any = data
    for k in head:
        node = node[int(k)] if isinstance(node, list) else node[k]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return data


def test_good_policy_parses_into_a_heal_plan() -> None:
    p = parse_policy(GOOD, "p.json")
    assert [r.action for r in p.rules] == ["notify", "heal", "pause"]
    plan = p.heal_plan()
    assert plan.rounds == 3 and plan.stages == (25.0, 100.0) and plan.soak_s == 30
    assert plan.wait_s == 30 * 60 and plan.gates == tuple(GOOD["gates"])
    assert p.max_runs_per_day == 2 and p.cooldown_s == 600
    assert p.to_dict()["webhook"]["url"] == "http://127.0.0.1:9/hook"


@pytest.mark.parametrize(("path", "value", "key"), [
    ("budget.rounds", 0, "budget.rounds"),
    ("budget.rounds", 2.5, "budget.rounds"),
    ("budget.max_minutes", float("nan"), "budget.max_minutes"),
    ("budget.colour", 1, "budget.colour"),
    ("rules.1.action", "reboot", "rules[1].action"),
    ("rules.1.match.kinds", ["weather"], "rules[1].match.kinds[0]"),
    ("rules.1.match.severity", "urgent", "rules[1].match.severity"),
    ("rules.2.match.below", "low", "rules[2].match.below"),
    ("rules.0.name", "kws", "rules[1].name"),
    ("gates.0", "error_rate<<", "gates[0]"),
    ("gates.1", "drift_psi_max<0.1", "gates[1]"),
    ("rollout.stages", [50, 25, 100], "rollout.stages"),
    ("rollout.stages", [25, 50], "rollout.stages"),
    ("webhook.url", "ftp://x/y", "webhook.url"),
    ("limits.max_runs_per_day", -1, "limits.max_runs_per_day"),
    ("limits.cooldown_after_failure_s", True, "limits.cooldown_after_failure_s"),
    ("version", 2, "version"),
    ("rules", [], "rules"),
])
def test_bad_values_name_the_key(path: str, value: Any, key: str) -> None:
    with pytest.raises(InputError) as e:
        parse_policy(_with(path, value), "p.json")
    msg = str(e.value)
    assert "\n" not in msg and f"p.json: {key}: expected" in msg, msg


def test_metric_needs_a_bound_and_a_bound_needs_a_metric() -> None:
    with pytest.raises(InputError, match=r"rules\[0\].match: expected 'above' or 'below'"):
        parse_policy({"rules": [{"match": {"metric": "x"}, "action": "heal"}]})
    with pytest.raises(InputError, match=r"rules\[0\].match.metric: expected a metric"):
        parse_policy({"rules": [{"match": {"above": 1}, "action": "heal"}]})


def _alert(psi: float, **metrics: float) -> dict[str, Any]:
    return {"drifted": ["f0"], "metrics": {"drift_psi_max": psi, **metrics}, "quality": []}


def test_decide_first_matching_rule() -> None:
    p = parse_policy(GOOD)
    d = decide(p, "kws", "site=a", _alert(0.3))
    assert (d.action, d.rule, d.severity) == ("heal", "kws", "critical")
    # below the rule's least severity: no heal; the accuracy floor still applies
    assert decide(p, "kws", "site=a", _alert(0.05)).action == "none"
    assert decide(p, "kws", "site=a", _alert(0.05, est_accuracy=0.5)).action == "pause"
    # another model: not the kws rule
    assert decide(p, "har", "site=a", _alert(0.3)).action == "none"


def test_broken_inputs_never_start_a_fine_tune() -> None:
    heal_all = parse_policy({"rules": [{"match": {}, "action": "heal"}]})
    for summary in (
        {**_alert(0.5), "quality": ["f3"]},
        _alert(0.5, nan_rate_max=0.2),
        _alert(0.5, out_of_range_rate_max=0.1),
        _alert(0.5, stuck_features=1.0),
    ):
        d = decide(heal_all, "kws", "*", summary)
        assert d.action == "notify" and "broken inputs" in d.reason, summary
    assert decide(heal_all, "kws", "*", _alert(0.5, nan_rate_max=0.0)).action == "heal"


def test_limits_kill_switch_rate_and_cooldown() -> None:
    p = parse_policy(GOOD)
    assert check_limits(p, runs_today=0, last_failure_at=None, now=1e6, paused=False) is None
    assert "paused" in str(check_limits(p, runs_today=0, last_failure_at=None, now=1e6,
                                        paused=True))
    assert "rate limit" in str(check_limits(p, runs_today=2, last_failure_at=None, now=1e6,
                                            paused=False))
    assert "cool-down" in str(check_limits(p, runs_today=0, last_failure_at=1e6 - 60,
                                           now=1e6, paused=False))
    assert check_limits(p, runs_today=0, last_failure_at=1e6 - 601, now=1e6,
                        paused=False) is None


def test_load_policy_files(tmp_path: Path) -> None:
    (tmp_path / "p.json").write_text(json.dumps(GOOD))
    assert len(load_policy(tmp_path / "p.json").rules) == 3
    (tmp_path / "p.yaml").write_text("rules:\n  - action: heal\n")
    assert load_policy(tmp_path / "p.yaml").rules[0].name == "rule-1"
    (tmp_path / "bad.yaml").write_text("rules: [\n")
    with pytest.raises(FileError, match="not valid YAML"):
        load_policy(tmp_path / "bad.yaml")
    (tmp_path / "p.txt").write_text("{}")
    with pytest.raises(FileError, match="expected a .yaml"):
        load_policy(tmp_path / "p.txt")
    with pytest.raises(FileError, match="expected an existing file"):
        load_policy(tmp_path / "none.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(InputError, match="expected a mapping"):
        load_policy(tmp_path / "list.yaml")


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edgeloop", "autoheal", *args],
                          capture_output=True, text=True, timeout=120)


def test_cli_check(tmp_path: Path) -> None:
    (tmp_path / "p.json").write_text(json.dumps(GOOD))
    (tmp_path / "a.json").write_text(json.dumps(
        {"model": "kws", "cohort": "site=a", "detail": _alert(0.3)}))
    r = _cli("check", str(tmp_path / "p.json"), "--alert", str(tmp_path / "a.json"), "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["decision"]["action"] == "heal" and len(out["policy"]["rules"]) == 3
    (tmp_path / "b.json").write_text(json.dumps(_with("limits.max_runs_per_day", "two")))
    r = _cli("check", str(tmp_path / "b.json"))
    assert r.returncode != 0
    lines = (r.stderr + r.stdout).strip().splitlines()
    assert len(lines) == 1 and "limits.max_runs_per_day: expected an integer" in lines[0]


def test_federation_mode_and_its_settings() -> None:
    assert parse_policy(GOOD).heal_plan().federation == "in-process"
    p = parse_policy({**GOOD, "federation": "deployment"}, "p.json")
    plan = p.heal_plan()
    assert plan.federation == "deployment" and plan.fl_min_nodes == 2
    p = parse_policy({**GOOD, "federation": {"mode": "deployment", "min_nodes": 5,
                                             "round_timeout_s": 30}}, "p.json")
    plan = p.heal_plan()
    assert (plan.fl_min_nodes, plan.fl_round_timeout) == (5, 30.0)
    assert p.to_dict()["federation"] == {"mode": "deployment", "min_nodes": 5,
                                         "round_timeout_s": 30.0}
    assert p.sha256 != parse_policy(GOOD, "p.json").sha256  # the hash covers the mode


@pytest.mark.parametrize(("value", "key"), [
    ("ray", "federation"),
    ({"mode": "simulation"}, "federation.mode"),
    ({"mode": "deployment", "min_nodes": 1}, "federation.min_nodes"),
    ({"mode": "deployment", "min_nodes": 21}, "federation.min_nodes"),  # > budget.max_devices
    ({"mode": "deployment", "round_timeout_s": float("inf")}, "federation.round_timeout_s"),
    ({"mode": "deployment", "rounds": 3}, "federation.rounds"),
    ({"min_nodes": 3}, "federation.min_nodes"),  # in-process: no nodes to wait for
    (["deployment"], "federation"),
])
def test_bad_federation_names_the_key(value: Any, key: str) -> None:
    with pytest.raises(InputError) as e:
        parse_policy({**GOOD, "federation": value}, "p.json")
    msg = str(e.value)
    assert "\n" not in msg and f"p.json: {key}: expected" in msg, msg


def test_worker_refuses_a_deployment_policy_without_the_superlink_tls(tmp_path: Path) -> None:
    (tmp_path / "p.json").write_text(json.dumps({**GOOD, "federation": "deployment"}))
    for d in ("data", "data/keys", "data/tuf"):
        (tmp_path / d).mkdir()
    r = subprocess.run([sys.executable, "-m", "edgeloop", "autoheal", "worker",
                        str(tmp_path / "p.json"), "--data", str(tmp_path / "data"), "--dataset",
                        "blobs", "--once", "--db", f"sqlite:///{tmp_path / 'x.db'}"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode != 0
    assert "federation deployment needs --superlink-cert" in r.stderr, r.stderr
    assert not (tmp_path / "x.db").exists()  # refused before touching the database


def test_server_refuses_a_deployment_policy_without_tls_and_ca(tmp_path: Path) -> None:
    (tmp_path / "p.json").write_text(json.dumps({**GOOD, "federation": "deployment"}))
    base = [sys.executable, "-m", "edgeloop", "server", "--data", str(tmp_path / "data"),
            "--auto-heal", str(tmp_path / "p.json"), "--auto-heal-dataset", "digits"]
    r = subprocess.run(base, capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "--auto-heal-superlink-ca" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "data").exists()
    r = subprocess.run([*base, "--auto-heal-superlink-ca", str(tmp_path / "nope.pem")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "--auto-heal-superlink-ca" in r.stderr, r.stderr


def test_cohort_labels() -> None:
    from edgeloop.loop import cohort_labels

    assert cohort_labels("*") == {} and cohort_labels("site=north") == {"site": "north"}
    assert cohort_labels("a=1,b=2") == {"a": "1", "b": "2"}
    with pytest.raises(InputError, match="cohort"):
        cohort_labels("north")
