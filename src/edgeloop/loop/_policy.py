"""The auto-heal policy: which monitoring alerts the unattended loop acts on, and how.

A policy file (YAML or JSON) holds ``rules`` (the first whose ``match`` fits an alert names its
``action``: ``heal`` (queue and run the federated fine-tune chain), ``pause`` (stop the model's
automatic actions until a person resumes them) or ``notify`` (only tell the webhook)), the
``budget`` and ``gates`` of the heal it starts, the ``rollout`` stages, the ``webhook`` to tell
and the ``limits`` (automatic runs per model per day, cool-down after a failed run).
:func:`load_policy` validates it, each error one line naming the key and what was expected;
:func:`decide` maps an alert to an action (an alert whose inputs are broken, by the data-quality
counters, never starts a fine-tune); :func:`check_limits` says whether a run may start now.
docs/autoheal.md is the reference.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from edgeloop.errors import EdgeloopError, FileError, InputError
from edgeloop.fleet import parse_gate
from edgeloop.loop._heal import DEFAULT_GATES, HealPlan

__all__ = [
    "ACTIONS",
    "ALERT_KINDS",
    "SEVERITIES",
    "Decision",
    "Policy",
    "Rule",
    "alert_facts",
    "check_limits",
    "decide",
    "load_policy",
    "parse_policy",
]

ACTIONS = ("heal", "pause", "notify")
ALERT_KINDS = ("drift", "accuracy", "bias", "quality")
SEVERITIES = ("info", "warning", "critical")
# an alert's severity from its largest feature PSI (the usual reading: < 0.1 no real shift,
# 0.1-0.25 moderate, > 0.25 significant)
PSI_WARNING, PSI_CRITICAL = 0.1, 0.25
_QUALITY_METRICS = ("nan_rate_max", "out_of_range_rate_max", "stuck_features")
_TOP_KEYS = ("version", "rules", "budget", "gates", "rollout", "webhook", "limits",
             "federation")
_MAX_RULES = 100


@dataclass(frozen=True)
class Rule:
    """One ``rules`` entry: the alerts it matches and the action it takes."""

    name: str
    action: str
    models: tuple[str, ...] = ("*",)
    cohorts: tuple[str, ...] = ("*",)
    kinds: tuple[str, ...] = ALERT_KINDS
    severity: str = "info"  # the least severity it matches
    metric: str | None = None
    above: float | None = None
    below: float | None = None

    def matches(self, model: str, cohort: str, facts: Mapping[str, Any]) -> bool:
        if not any(fnmatch.fnmatchcase(model, p) for p in self.models):
            return False
        if not any(fnmatch.fnmatchcase(cohort, p) for p in self.cohorts):
            return False
        if not set(self.kinds) & set(facts["kinds"]):
            return False
        if SEVERITIES.index(facts["severity"]) < SEVERITIES.index(self.severity):
            return False
        if self.metric is not None:
            value = facts["metrics"].get(self.metric)
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                return False
            if self.above is not None and not value > self.above:
                return False
            if self.below is not None and not value < self.below:
                return False
        return True


@dataclass(frozen=True)
class Policy:
    """A validated auto-heal policy (:func:`load_policy`)."""

    rules: tuple[Rule, ...]
    rounds: int = 5
    max_devices: int = 50
    max_minutes: float = 60.0
    gates: tuple[str, ...] = DEFAULT_GATES
    stages: tuple[float, ...] = (25.0, 50.0, 100.0)
    soak_s: float = 60.0
    webhook_url: str | None = None
    webhook_timeout_s: float = 5.0
    max_runs_per_day: int = 3
    cooldown_s: float = 3600.0
    federation: str = "in-process"  # or "deployment": on the cohort's agents' SuperNodes
    min_nodes: int = 2  # deployment: connected SuperNodes a round waits for
    round_timeout_s: float = 120.0  # deployment: seconds a round waits for replies
    source: str = "<policy>"
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
    # the policy file's sha256 (:func:`load_policy`), else of its data as canonical JSON
    sha256: str = ""

    @property
    def name(self) -> str:
        """The policy file's name (``source`` without its directories)."""
        return Path(self.source).name or self.source

    def heal_plan(self, **overrides: Any) -> HealPlan:
        """The :class:`HealPlan` of the runs this policy starts (naming the policy, for the
        lineage of the versions it registers)."""
        kw: dict[str, Any] = {"rounds": self.rounds, "gates": self.gates,
                              "stages": self.stages, "soak_s": self.soak_s,
                              "wait_s": self.max_minutes * 60.0, "policy": self.name,
                              "policy_sha256": self.sha256 or None,
                              "federation": self.federation, "fl_min_nodes": self.min_nodes,
                              "fl_round_timeout": self.round_timeout_s}
        kw.update(overrides)
        return HealPlan(**kw)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rules": [{"name": r.name, "action": r.action, "models": list(r.models),
                       "cohorts": list(r.cohorts), "kinds": list(r.kinds),
                       "severity": r.severity, "metric": r.metric, "above": r.above,
                       "below": r.below} for r in self.rules],
            "budget": {"rounds": self.rounds, "max_devices": self.max_devices,
                       "max_minutes": self.max_minutes},
            "gates": list(self.gates),
            "rollout": {"stages": list(self.stages), "soak_s": self.soak_s},
            "webhook": ({"url": self.webhook_url, "timeout_s": self.webhook_timeout_s}
                        if self.webhook_url else None),
            "limits": {"max_runs_per_day": self.max_runs_per_day,
                       "cooldown_after_failure_s": self.cooldown_s},
            "federation": {"mode": self.federation, "min_nodes": self.min_nodes,
                           "round_timeout_s": self.round_timeout_s},
        }


@dataclass(frozen=True)
class Decision:
    """What the policy does about one alert: ``action`` (``heal``, ``pause``, ``notify`` or
    ``none``; ``skip`` from :func:`~edgeloop.loop.screen_job` when the limits refuse a heal),
    the rule that decided (None: no rule matched), and why."""

    action: str
    rule: str | None
    severity: str
    kinds: tuple[str, ...]
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"action": self.action, "rule": self.rule, "severity": self.severity,
                "kinds": list(self.kinds), "reason": self.reason}


# --- validation --------------------------------------------------------------------------


class _Checker:
    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, key: str, expected: str, got: Any) -> InputError:
        shown = repr(got)
        if len(shown) > 60:
            shown = shown[:57] + "..."
        return InputError(f"policy {self.source}: {key}: expected {expected}, got {shown}")

    def mapping(self, key: str, value: Any, allowed: Sequence[str]) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.fail(key, "a mapping", value)
        for k in value:
            if not isinstance(k, str) or k not in allowed:
                raise self.fail(f"{key}.{k}" if key else str(k),
                                f"one of the keys {', '.join(allowed)}", k)
        return value

    def number(self, key: str, value: Any, lo: float, hi: float, *,
               integer: bool = False) -> float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ok and integer and not float(value).is_integer():
            ok = False
        if not ok or not math.isfinite(float(value)) or not lo <= float(value) <= hi:
            kind = "an integer" if integer else "a number"
            raise self.fail(key, f"{kind} in [{lo:g}, {hi:g}]", value)
        return float(value)

    def text(self, key: str, value: Any, *, limit: int = 200) -> str:
        if not isinstance(value, str) or not value.strip() or len(value) > limit:
            raise self.fail(key, f"a non-empty string of at most {limit} characters", value)
        return value

    def names(self, key: str, value: Any, choices: Sequence[str] | None = None
              ) -> tuple[str, ...]:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not value or len(value) > 100:
            raise self.fail(key, "a non-empty list of names (or one name)", value)
        out = []
        for i, v in enumerate(value):
            v = self.text(f"{key}[{i}]", v)
            if choices is not None and v not in choices:
                raise self.fail(f"{key}[{i}]", f"one of {', '.join(choices)}", v)
            out.append(v)
        return tuple(out)


def _rule(c: _Checker, i: int, raw: Any, seen: set[str]) -> Rule:
    key = f"rules[{i}]"
    raw = c.mapping(key, raw, ("name", "match", "action"))
    name = c.text(f"{key}.name", raw.get("name", f"rule-{i + 1}"), limit=80)
    if name in seen:
        raise c.fail(f"{key}.name", "a name no other rule has", name)
    seen.add(name)
    if "action" not in raw:
        raise c.fail(f"{key}.action", f"one of {', '.join(ACTIONS)}", None)
    action = raw["action"]
    if action not in ACTIONS:
        raise c.fail(f"{key}.action", f"one of {', '.join(ACTIONS)}", action)
    match = c.mapping(f"{key}.match", raw.get("match", {}),
                      ("models", "cohorts", "kinds", "severity", "metric", "above", "below"))
    kw: dict[str, Any] = {}
    for k in ("models", "cohorts"):
        if k in match:
            kw[k] = c.names(f"{key}.match.{k}", match[k])
    if "kinds" in match:
        kw["kinds"] = c.names(f"{key}.match.kinds", match["kinds"], ALERT_KINDS)
    if "severity" in match:
        if match["severity"] not in SEVERITIES:
            raise c.fail(f"{key}.match.severity", f"one of {', '.join(SEVERITIES)}",
                         match["severity"])
        kw["severity"] = match["severity"]
    bounds = [b for b in ("above", "below") if b in match]
    if "metric" in match:
        kw["metric"] = c.text(f"{key}.match.metric", match["metric"], limit=80)
        if not bounds:
            raise c.fail(f"{key}.match", "'above' or 'below' with 'metric'", dict(match))
    elif bounds:
        raise c.fail(f"{key}.match.metric", f"a metric name for '{bounds[0]}'", None)
    for b in bounds:
        kw[b] = c.number(f"{key}.match.{b}", match[b], -1e12, 1e12)
    if "above" in kw and "below" in kw and not kw["above"] < kw["below"]:
        raise c.fail(f"{key}.match.below", f"a number above 'above' ({kw['above']:g})",
                     kw["below"])
    return Rule(name=name, action=action, **kw)


def _federation(c: _Checker, raw: Any, max_devices: int) -> dict[str, Any]:
    """``federation``: a mode (``in-process`` or ``deployment``), or a mapping with ``mode``,
    ``min_nodes`` and ``round_timeout_s``."""
    modes = ("in-process", "deployment")
    fed = c.mapping("federation", {"mode": raw} if isinstance(raw, str) else raw,
                    ("mode", "min_nodes", "round_timeout_s"))
    mode = fed.get("mode", "in-process")
    if mode not in modes:
        raise c.fail("federation.mode" if not isinstance(raw, str) else "federation",
                     f"one of {', '.join(modes)}", mode)
    out: dict[str, Any] = {"federation": mode}
    if "min_nodes" in fed:
        out["min_nodes"] = int(c.number("federation.min_nodes", fed["min_nodes"], 2,
                                        max_devices, integer=True))
    if "round_timeout_s" in fed:
        out["round_timeout_s"] = c.number("federation.round_timeout_s",
                                          fed["round_timeout_s"], 1, 86_400)
    if mode == "in-process" and len(out) > 1:
        key = next(k for k in ("min_nodes", "round_timeout_s") if k in out)
        raise c.fail(f"federation.{key}", "no value: it applies to mode deployment only",
                     fed[key])
    return out


def parse_policy(data: Any, source: str = "<policy>") -> Policy:
    """Validate a policy already read into plain data (a mapping)."""
    c = _Checker(source)
    data = c.mapping("", data, _TOP_KEYS) if isinstance(data, Mapping) else None
    if data is None:
        raise InputError(f"policy {source}: expected a mapping with the keys "
                         f"{', '.join(_TOP_KEYS)}")
    if "version" in data and data["version"] != 1:
        raise c.fail("version", "1", data["version"])
    rules_raw = data.get("rules")
    if not isinstance(rules_raw, list) or not rules_raw or len(rules_raw) > _MAX_RULES:
        raise c.fail("rules", f"a list of 1 to {_MAX_RULES} rules", rules_raw)
    seen: set[str] = set()
    rules = tuple(_rule(c, i, r, seen) for i, r in enumerate(rules_raw))
    kw: dict[str, Any] = {}
    budget = c.mapping("budget", data.get("budget", {}),
                       ("rounds", "max_devices", "max_minutes"))
    if "rounds" in budget:
        kw["rounds"] = int(c.number("budget.rounds", budget["rounds"], 1, 1000, integer=True))
    if "max_devices" in budget:
        kw["max_devices"] = int(c.number("budget.max_devices", budget["max_devices"], 2,
                                         100_000, integer=True))
    if "max_minutes" in budget:
        kw["max_minutes"] = c.number("budget.max_minutes", budget["max_minutes"], 1, 1440)
    if "gates" in data:
        gates = data["gates"]
        if not isinstance(gates, list) or not gates or len(gates) > 20:
            raise c.fail("gates", "a list of 1 to 20 gates like 'error_rate<0.05'", gates)
        for i, g in enumerate(gates):
            c.text(f"gates[{i}]", g)
            try:
                parse_gate(g)
            except EdgeloopError:
                raise c.fail(f"gates[{i}]", "a gate like 'est_accuracy>=baseline-0.02'",
                             g) from None
            if str(g).strip().startswith("drift"):
                raise c.fail(f"gates[{i}]", "an accuracy or error gate (a healed model "
                             "still sees the drifted inputs)", g)
        kw["gates"] = tuple(str(g) for g in gates)
    rollout = c.mapping("rollout", data.get("rollout", {}), ("stages", "soak_s"))
    if "stages" in rollout:
        st = rollout["stages"]
        if not isinstance(st, list) or not st or len(st) > 10:
            raise c.fail("rollout.stages", "a list of 1 to 10 percents", st)
        pcts = [c.number(f"rollout.stages[{i}]", v, 0.01, 100) for i, v in enumerate(st)]
        if any(b <= a for a, b in zip(pcts, pcts[1:], strict=False)) or pcts[-1] != 100:
            raise c.fail("rollout.stages", "increasing percents ending at 100", st)
        kw["stages"] = tuple(pcts)
    if "soak_s" in rollout:
        kw["soak_s"] = c.number("rollout.soak_s", rollout["soak_s"], 0, 86_400)
    if data.get("webhook") is not None:
        hook = c.mapping("webhook", data["webhook"], ("url", "timeout_s"))
        url = c.text("webhook.url", hook.get("url"), limit=2000)
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise c.fail("webhook.url", "an http(s) URL with a host", url)
        kw["webhook_url"] = url
        if "timeout_s" in hook:
            kw["webhook_timeout_s"] = c.number("webhook.timeout_s", hook["timeout_s"], 0.1, 60)
    limits = c.mapping("limits", data.get("limits", {}),
                       ("max_runs_per_day", "cooldown_after_failure_s"))
    if "max_runs_per_day" in limits:
        kw["max_runs_per_day"] = int(c.number("limits.max_runs_per_day",
                                              limits["max_runs_per_day"], 0, 1000,
                                              integer=True))
    if "cooldown_after_failure_s" in limits:
        kw["cooldown_s"] = c.number("limits.cooldown_after_failure_s",
                                    limits["cooldown_after_failure_s"], 0, 30 * 86_400)
    if "federation" in data:
        kw |= _federation(c, data["federation"], kw.get("max_devices", 50))
    digest = hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()
    policy = Policy(rules=rules, source=source, raw=dict(data), sha256=digest, **kw)
    try:
        policy.heal_plan()
    except InputError as e:
        raise InputError(f"policy {source}: {e}") from None
    return policy


def load_policy(path: str | Path) -> Policy:
    """Read and validate a policy file (``.yaml``/``.yml``/``.json``)."""
    p = Path(path)
    source = str(p)
    if not p.is_file():
        raise FileError(f"policy {source!r}: expected an existing file")
    if p.stat().st_size > 1_000_000:
        raise FileError(f"policy {source!r}: expected a file under 1 MB")
    raw = p.read_bytes()
    text = raw.decode("utf-8", errors="replace")
    if p.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise FileError(f"policy {source}: not valid JSON (line {e.lineno}: "
                            f"{e.msg})") from None
    elif p.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise FileError(f"policy {source}: reading YAML needs pyyaml "
                            "(pip install pyyaml), or write the policy as .json") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" (line {mark.line + 1})" if mark is not None else ""
            raise FileError(f"policy {source}: not valid YAML{where}") from None
    else:
        raise FileError(f"policy {source!r}: expected a .yaml, .yml or .json file")
    return dataclasses.replace(parse_policy(data, source),
                               sha256=hashlib.sha256(raw).hexdigest())


# --- decisions ---------------------------------------------------------------------------


def alert_facts(summary: Mapping[str, Any]) -> dict[str, Any]:
    """An alert's kinds, severity and metrics, from the summary monitoring stores with it
    (``drifted``, ``metrics``, ``quality``)."""
    metrics = summary.get("metrics") if isinstance(summary.get("metrics"), Mapping) else {}
    assert isinstance(metrics, Mapping)
    kinds = []
    if summary.get("drifted"):
        kinds.append("drift")
    if any(k in metrics for k in ("est_accuracy", "realized_accuracy")):
        kinds.append("accuracy")
    if "bias_gap_max" in metrics:
        kinds.append("bias")
    broken = [k for k in _QUALITY_METRICS
              if isinstance(metrics.get(k), (int, float)) and metrics[k] > 0]
    if summary.get("quality") or broken:
        kinds.append("quality")
    psi = metrics.get("drift_psi_max", 0.0)
    psi = float(psi) if isinstance(psi, (int, float)) and math.isfinite(psi) else 0.0
    severity = ("critical" if psi >= PSI_CRITICAL else
                "warning" if psi >= PSI_WARNING else "info")
    return {"kinds": tuple(kinds), "severity": severity, "metrics": dict(metrics),
            "quality": sorted(summary.get("quality") or []) + broken}


def decide(policy: Policy, model: str, cohort: str, summary: Mapping[str, Any]) -> Decision:
    """The action the first matching rule takes on an alert. A ``heal`` for an alert whose
    inputs are broken (NaN/inf, out-of-range or stuck features) becomes ``notify``: a model
    fine-tuned on broken inputs learns the breakage."""
    facts = alert_facts(summary)
    kinds, severity = facts["kinds"], facts["severity"]
    for rule in policy.rules:
        if not rule.matches(model, cohort, facts):
            continue
        if rule.action == "heal" and "quality" in kinds:
            return Decision("notify", rule.name, severity, kinds,
                            "broken inputs (" + ", ".join(facts["quality"][:5]) +
                            "): a fine-tune never starts on data-quality alerts")
        return Decision(rule.action, rule.name, severity, kinds, f"rule {rule.name!r}")
    return Decision("none", None, severity, kinds, "no rule matches")


def check_limits(policy: Policy, *, runs_today: int, last_failure_at: float | None,
                 now: float, paused: bool) -> str | None:
    """Why an automatic run may not start now (None: it may): the kill switch, the runs per
    model per day, the cool-down after a failed run."""
    if paused:
        return "auto-heal is paused (edgeloop autoheal resume)"
    if runs_today >= policy.max_runs_per_day:
        return (f"rate limit: {runs_today} automatic runs of this model today "
                f"(limits.max_runs_per_day {policy.max_runs_per_day})")
    if last_failure_at is not None and now - last_failure_at < policy.cooldown_s:
        left = policy.cooldown_s - (now - last_failure_at)
        return f"cool-down after a failed run: {left:.0f} s left"
    return None
