"""Health gates: a small expression language and the statistical tests behind it. Pure.

::

    gate      := METRIC OP expr          error_rate<0.01   p99_ms<=1.2*baseline
    OP        := < | <= | > | >=         (< and <= : higher is worse; > and >= : lower is worse)
    expr      := terms of numbers and ``baseline`` with + - * / and parentheses, linear in
                 ``baseline`` (the control group's value of the same metric)

No ``eval``: a tokenizer and a recursive-descent parser that only knows numbers, ``baseline``
and the four operators, and refuses anything not linear in ``baseline``.

Each gate is judged on per-device samples of the stage (treatment) and of the devices left on
the previous version (control), with a minimum sample size (``pending`` below it):

* a **rate** (``error_rate`` when reports carry ``errors`` and ``requests``): the pooled rates
  by a one-sided two-proportion z-test with Agresti-Caffo pseudo-counts against the bound (each
  device weighing at most ``weight_cap`` median devices of its group, :func:`cap_weights`), and
  each device on its own against the same bound at ``alpha / devices`` (Bonferroni), so one
  failing device is caught even when the pooled rate hides it;
* any other metric (``p99_ms``, ``cpu_percent`` ...): each device's median over its reports;
  the group by a one-sided Mann-Whitney U test (treatment against the control scaled by the
  gate's expression) or, without ``baseline``, a one-sided sign test against the threshold;
  and each device whose median breaks the bound by its own reports against the control
  group's reports (Mann-Whitney at ``alpha / devices``).

A gate fails only when a test is significant, so noise in a small stage does not fail a good
release; it passes when the samples are large enough and no test is significant.

**Monitoring metrics** (:data:`MONITOR_METRICS`: ``drift_psi_max``, ``est_accuracy``,
``realized_accuracy`` ...) are not per-device samples but properties of a group's merged
sketches (``edgeloop.monitor.drift.report_metrics`` of the stage's devices, and of the control
group for ``baseline``): :func:`evaluate_group_gate` compares the group value with the bound,
pending below ``min_rows`` merged rows. Drift's significance is in the monitoring tests (an
adjusted p-value and an effect above a floor); an accuracy comes with a 95 % interval, and an
``est_accuracy`` or ``realized_accuracy`` gate fails only when the value is beyond the bound at
``alpha`` by that interval (``est_accuracy_low`` is the gate for a conservative check).
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from edgeloop.errors import RolloutError

__all__ = [
    "MONITOR_METRICS",
    "DeviceSample",
    "Gate",
    "GateOptions",
    "GateResult",
    "cap_weights",
    "evaluate_gate",
    "evaluate_group_gate",
    "parse_gate",
]

# gate metrics computed from a group's merged monitoring sketches, not from device reports
MONITOR_METRICS = frozenset({
    "drift_psi_max", "drift_js_max", "drift_wasserstein_max", "drifted_features",
    "prediction_psi", "confidence_psi", "est_accuracy", "est_accuracy_low",
    "realized_accuracy", "nan_rate_max", "out_of_range_rate_max", "stuck_features",
    "bias_gap_max", "mean_shift",
})

Status = Literal["pass", "fail", "pending", "error"]  # error: evaluation raised (recorded)

_TOKEN = re.compile(r"\s*(?:(\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|\.\d+)|(baseline)|([-+*/()]))")
_GATE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_.]*)\s*(<=|>=|<|>)\s*(.+?)\s*$")


@dataclass(frozen=True)
class _Linear:
    """``a * baseline + b``."""

    a: float
    b: float


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens: list[str] = []
        pos = 0
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if m is None or m.end() == pos:
                if text[pos:].strip() == "":
                    break
                raise RolloutError(
                    f"gate expression {text!r}: unexpected {text[pos:].strip()[:10]!r} at "
                    f"{pos}; expected numbers, 'baseline', + - * / and parentheses"
                )
            self.tokens.append(next(g for g in m.groups() if g is not None))
            pos = m.end()
        self.i = 0

    def _peek(self) -> str | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def _take(self) -> str:
        tok = self._peek()
        if tok is None:
            raise RolloutError(f"gate expression {self.text!r} ends early")
        self.i += 1
        return tok

    def parse(self) -> _Linear:
        value = self._sum()
        if self._peek() is not None:
            raise RolloutError(f"gate expression {self.text!r}: unexpected {self._peek()!r}")
        return value

    def _sum(self) -> _Linear:
        left = self._product()
        while self._peek() in ("+", "-"):
            sign = 1.0 if self._take() == "+" else -1.0
            right = self._product()
            left = _Linear(left.a + sign * right.a, left.b + sign * right.b)
        return left

    def _product(self) -> _Linear:
        left = self._unary()
        while self._peek() in ("*", "/"):
            op = self._take()
            right = self._unary()
            if op == "*":
                if left.a and right.a:
                    raise RolloutError(f"gate expression {self.text!r}: baseline*baseline")
                left = _Linear(left.a * right.b + right.a * left.b, left.b * right.b)
            else:
                if right.a or right.b == 0:
                    raise RolloutError(
                        f"gate expression {self.text!r}: divide only by a non-zero number"
                    )
                left = _Linear(left.a / right.b, left.b / right.b)
        return left

    def _unary(self) -> _Linear:
        if self._peek() == "-":
            self._take()
            inner = self._unary()
            return _Linear(-inner.a, -inner.b)
        tok = self._take()
        if tok == "(":
            inner = self._sum()
            if self._take() != ")":
                raise RolloutError(f"gate expression {self.text!r}: expected ')'")
            return inner
        if tok == "baseline":
            return _Linear(1.0, 0.0)
        try:
            return _Linear(0.0, float(tok))
        except ValueError:
            raise RolloutError(f"gate expression {self.text!r}: unexpected {tok!r}") from None


@dataclass(frozen=True)
class Gate:
    """``metric op a*baseline + b``; ``relative`` when it uses the control group's value."""

    text: str
    metric: str
    op: str
    a: float
    b: float

    @property
    def relative(self) -> bool:
        return self.a != 0.0

    @property
    def higher_is_worse(self) -> bool:
        return self.op in ("<", "<=")

    def bound(self, baseline: float | None) -> float:
        return self.a * (baseline or 0.0) + self.b

    def holds(self, value: float, baseline: float | None) -> bool:
        bound = self.bound(baseline)
        return {
            "<": value < bound,
            "<=": value <= bound,
            ">": value > bound,
            ">=": value >= bound,
        }[self.op]


def parse_gate(text: str) -> Gate:
    """``"p99_ms<=1.2*baseline"`` -> :class:`Gate`; RolloutError naming what is wrong."""
    m = _GATE.match(text or "")
    if m is None:
        raise RolloutError(
            f"gate {text!r}: expected METRIC OP EXPR, e.g. 'error_rate<0.01' or "
            "'p99_ms<=1.2*baseline'"
        )
    metric, op, expr = m.groups()
    value = _Parser(expr).parse()
    return Gate(text.strip(), metric, op, value.a, value.b)


@dataclass(frozen=True)
class GateOptions:
    min_devices: int = 3  # per group (the treatment's is capped at the stage's size)
    min_requests: int = 100  # pooled requests per group, for rates
    min_reports: int = 2  # reports a device needs before its own test
    alpha: float = 0.01  # one-sided significance of every test
    weight_cap: float = 3.0  # a device's counts weigh at most this many median devices
    exclude_implausible: bool = True  # pooled tests leave out devices the others contradict

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class DeviceSample:
    """One device's reports (each a metrics dict) within the window being judged."""

    device_id: str
    reports: tuple[Mapping[str, float], ...]

    def values(self, metric: str) -> list[float]:
        out = []
        for r in self.reports:
            v = r.get(metric)
            if isinstance(v, int | float) and math.isfinite(v):
                out.append(float(v))
        return out


@dataclass(frozen=True)
class GateResult:
    gate: str
    status: Status
    treatment: float | None
    control: float | None
    bound: float | None
    devices: int
    control_devices: int
    p_value: float | None = None
    bad_devices: tuple[str, ...] = ()
    reason: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["bad_devices"] = list(self.bad_devices)
        return out


def _z(alpha: float) -> float:
    return statistics.NormalDist().inv_cdf(1.0 - alpha)


def _p_upper(z: float) -> float:
    return 1.0 - statistics.NormalDist().cdf(z)


def _rate_counts(metric: str) -> tuple[str, str] | None:
    if metric == "error_rate":
        return "errors", "requests"
    if metric.endswith("_rate"):
        stem = metric[: -len("_rate")]
        return stem + "s", "requests"
    return None


def _counts(sample: DeviceSample, num: str, den: str) -> tuple[float, float]:
    """A device's ``(numerator, requests)``, the numerator within ``[0, requests]``: a rate
    outside [0, 1] (a count that is not per request) would break the tests' variances."""
    n = max(sum(sample.values(den)), 0.0)
    return min(max(sum(sample.values(num)), 0.0), n), n


def cap_weights(
    counts: Sequence[tuple[float, float]], multiple: float
) -> list[tuple[float, float]]:
    """Each device's ``(errors, requests)`` with requests capped at ``multiple`` times the
    group's median device (errors scaled with them, so the device's own rate is kept).

    One device cannot outvote a group by reporting a huge count: past the cap it weighs as
    much as ``multiple`` typical devices, whatever it claims. The devices' own rates still
    count (a per-device median would not: it goes blind to rare errors, where most devices see
    none in a window). ``median_low`` so that, of two devices, the cap follows the smaller.
    """
    served = [n for _, n in counts if n > 0]
    if len(served) < 2 or multiple <= 0:
        return list(counts)
    cap = multiple * statistics.median_low(served)
    return [(e * cap / n, cap) if n > cap else (e, n) for e, n in counts]


def _rate_z(err: float, n: float, bound: float, c_var: float) -> float:
    """One-sided z of ``rate > bound`` with +1/+2 pseudo-counts; ``c_var`` the bound's variance."""
    p = (err + 1.0) / (n + 2.0)
    var = p * (1.0 - p) / (n + 2.0) + c_var
    return (p - bound) / math.sqrt(var)


def _orient(gate: Gate, values: list[float]) -> list[float]:
    return values if gate.higher_is_worse else [-v for v in values]


def _evaluate_rate(
    gate: Gate,
    treatment: Sequence[DeviceSample],
    control: Sequence[DeviceSample],
    num: str,
    den: str,
    opts: GateOptions,
    min_devices: int,
) -> GateResult:
    t = [_counts(s, num, den) for s in treatment]
    c = [_counts(s, num, den) for s in control]
    sign = 1.0 if gate.higher_is_worse else -1.0
    # the pooled tests weigh each device at most opts.weight_cap median devices, and leave out
    # a device whose own counts the rest of its group contradicts in the friendly direction
    # (a stage device claiming a huge error-free count; a control device claiming many errors)
    t_cap, c_cap = cap_weights(t, opts.weight_cap), cap_weights(c, opts.weight_cap)
    implausible: list[str] = []
    if opts.exclude_implausible:
        t_cap, t_out = _exclude_implausible(t, t_cap, -sign, opts.alpha)
        c_cap, c_out = _exclude_implausible(c, c_cap, sign, opts.alpha)
        implausible = [treatment[i].device_id for i in t_out] + [
            control[i].device_id for i in c_out
        ]
    t_err, t_n = sum(e for e, _ in t_cap), sum(n for _, n in t_cap)
    c_err, c_n = sum(e for e, _ in c_cap), sum(n for _, n in c_cap)
    t_dev = sum(1 for _, n in t if n > 0)
    c_dev = sum(1 for _, n in c if n > 0)
    rate_t = t_err / t_n if t_n else None
    rate_c = c_err / c_n if c_n else None
    extra = {"implausible_devices": implausible} if implausible else {}
    base = GateResult(gate.text, "pending", rate_t, rate_c, None, t_dev, c_dev, extra=extra)
    if gate.relative and (c_n < opts.min_requests or c_dev < opts.min_devices):
        return _with(base, reason=f"control: {c_dev} devices, {c_n:.0f} requests; too few")
    bound = gate.bound(rate_c)
    c_var = 0.0
    if gate.relative and rate_c is not None:
        pc = (c_err + 1.0) / (c_n + 2.0)
        c_var = gate.a**2 * pc * (1.0 - pc) / (c_n + 2.0)
    # the devices on their own: a single failing one is caught whatever the pooled rate
    bad = []
    z_dev = _z(opts.alpha / max(len(treatment), 1))
    for s, (e, n) in zip(treatment, t, strict=True):
        if n > 0:
            z = _rate_z(e, n, bound, c_var) if sign > 0 else _rate_z(n - e, n, 1 - bound, c_var)
            if z > z_dev:
                bad.append(s.device_id)
    if t_n < opts.min_requests or t_dev < min_devices:
        return _too_few(base, bound, bad, f"stage: {t_dev} devices, {t_n:.0f} requests; too few")
    if sign > 0:
        z = _rate_z(t_err, t_n, bound, c_var)
    else:
        z = _rate_z(t_n - t_err, t_n, 1.0 - bound, c_var)
    p = _p_upper(z)
    return _verdict(
        base, bound, p, opts.alpha, bad, f"{gate.metric} {rate_t:.4g} beyond {bound:.4g}"
    )


def _exclude_implausible(
    raw: Sequence[tuple[float, float]],
    capped: Sequence[tuple[float, float]],
    friendly: float,
    alpha: float,
) -> tuple[list[tuple[float, float]], list[int]]:
    """``capped`` without the devices whose raw counts are implausible given the rest of the
    group, in the ``friendly`` direction (-1: too few errors, +1: too many); and their indexes.

    Each device's own ``errors`` out of ``requests`` against the binomial with the other
    devices' pooled rate, one-sided at ``alpha / devices`` (Bonferroni), so an honest device is
    almost never left out but one claiming ``requests=1e6, errors=0`` in a stage erring at 4 %
    always is. Needs at least three devices with data (two cannot outvote each other).
    """
    from scipy import stats

    served = [i for i, (_, n) in enumerate(raw) if n > 0]
    if len(served) < 3:
        return list(capped), []
    err, n = sum(e for e, _ in capped), sum(k for _, k in capped)
    level = alpha / len(served)
    out = []
    for i in served:
        e_raw, n_raw = raw[i]
        e_cap, n_cap = capped[i]
        rest = (err - e_cap + 1.0) / (n - n_cap + 2.0)  # pseudo-counts: never exactly 0 or 1
        k, trials = round(e_raw), max(round(n_raw), 1)
        if friendly < 0:
            p = float(stats.binom.cdf(k, trials, rest))
        else:
            p = float(stats.binom.sf(k - 1, trials, rest))
        if p < level:
            out.append(i)
    drop = set(out)
    return [(0.0, 0.0) if i in drop else c for i, c in enumerate(capped)], out


def _too_few(base: GateResult, bound: float, bad: Sequence[str], reason: str) -> GateResult:
    """Too little data to test the stage as a whole: fail only on devices already beyond."""
    if bad:
        return _with(base, status="fail", bound=bound, bad_devices=tuple(bad), reason=_bad(bad))
    return _with(base, bound=bound, reason=reason)


def _verdict(
    base: GateResult, bound: float, p: float, alpha: float, bad: Sequence[str], beyond: str
) -> GateResult:
    """Fail when the stage is significantly beyond the bound (``beyond`` says how) or any
    device is; else pass."""
    if p < alpha:
        return _with(
            base,
            status="fail",
            bound=bound,
            p_value=p,
            bad_devices=tuple(bad),
            reason=f"{beyond} (p={p:.2g})",
        )
    if bad:
        return _with(
            base, status="fail", bound=bound, p_value=p, bad_devices=tuple(bad), reason=_bad(bad)
        )
    return _with(base, status="pass", bound=bound, p_value=p, reason="within the bound")


def _bad(bad: Sequence[str]) -> str:
    more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
    return f"device(s) {', '.join(bad[:3])}{more} significantly beyond the bound"


def _with(result: GateResult, **changes: Any) -> GateResult:
    return GateResult(**{**result.__dict__, **changes})


REFERENCE_REPORTS = 256  # control reports a device's own test uses (evenly spaced quantiles)


def _quantiles(values: Sequence[float], k: int) -> list[float]:
    """``values`` sorted, thinned to ``k`` evenly spaced order statistics (min and max kept)."""
    ordered = sorted(values)
    n = len(ordered)
    if n <= k:
        return ordered
    return [ordered[round(i * (n - 1) / (k - 1))] for i in range(k)]


def _evaluate_values(
    gate: Gate,
    treatment: Sequence[DeviceSample],
    control: Sequence[DeviceSample],
    opts: GateOptions,
    min_devices: int,
) -> GateResult:
    from scipy import stats

    t_vals = {s.device_id: v for s in treatment if (v := s.values(gate.metric))}
    c_vals = [v for s in control if (v := s.values(gate.metric))]
    t_med = {d: statistics.median(v) for d, v in t_vals.items()}
    c_med = [statistics.median(v) for v in c_vals]
    treat = statistics.median(t_med.values()) if t_med else None
    ctrl = statistics.median(c_med) if c_med else None
    base = GateResult(gate.text, "pending", treat, ctrl, None, len(t_med), len(c_med))
    if gate.relative and len(c_med) < opts.min_devices:
        return _with(base, reason=f"control: {len(c_med)} devices; too few")
    bound = gate.bound(ctrl)
    scaled_dev = _orient(gate, [gate.a * x + gate.b for x in c_med])
    # a device is judged against the control's reports: scaled by the gate when relative, as
    # they are when absolute (then its median must also break the threshold)
    scaled_rep = _orient(
        gate, [gate.a * x + gate.b if gate.relative else x for v in c_vals for x in v]
    )
    oriented_bound = bound if gate.higher_is_worse else -bound
    # a device's few reports are tested against the control's distribution: its quantiles
    # stand for thousands of reports (an exact test against 6,000 took seconds per device)
    reference = _quantiles(scaled_rep, REFERENCE_REPORTS)
    bad = []
    level = opts.alpha / max(len(t_med), 1)
    for device, values in t_vals.items():
        mine = _orient(gate, values)
        if len(mine) < opts.min_reports or statistics.median(mine) <= oriented_bound:
            continue
        if reference:
            method = "exact" if len(mine) <= 8 else "asymptotic"  # exact: tiny samples
            p = stats.mannwhitneyu(mine, reference, alternative="greater", method=method)
            significant = float(p.pvalue) < level
        else:  # no control: every report beyond the bound, more than chance allows
            above = sum(1 for x in mine if x > oriented_bound)
            significant = stats.binomtest(above, len(mine), 0.5, "greater").pvalue < level
        if significant:
            bad.append(device)
    if len(t_med) < min_devices:
        return _too_few(base, bound, bad, f"stage: {len(t_med)} devices; too few")
    oriented = _orient(gate, list(t_med.values()))
    if gate.relative:
        p = float(
            stats.mannwhitneyu(oriented, scaled_dev, alternative="greater", method="auto").pvalue
        )
    else:
        above = sum(1 for x in oriented if x > oriented_bound)
        p = float(stats.binomtest(above, len(oriented), 0.5, "greater").pvalue)
    beyond = f"{gate.metric} median {treat:.4g} beyond {bound:.4g}"
    return _verdict(base, bound, p, opts.alpha, bad, beyond)


def evaluate_gate(
    gate: Gate,
    treatment: Sequence[DeviceSample],
    control: Sequence[DeviceSample],
    opts: GateOptions = GateOptions(),
    *,
    stage_size: int | None = None,
) -> GateResult:
    """Judge ``gate`` on the stage's devices against the control group (values in, result out).

    ``stage_size`` (devices chosen for the stage) caps the treatment's minimum device count, so
    a one-device canary can pass.
    """
    min_devices = (
        opts.min_devices if stage_size is None else max(1, min(opts.min_devices, stage_size))
    )
    counts = _rate_counts(gate.metric)
    if counts is not None and any(s.values(counts[1]) for s in (*treatment, *control)):
        return _evaluate_rate(gate, treatment, control, *counts, opts, min_devices)
    return _evaluate_values(gate, treatment, control, opts, min_devices)


def evaluate_group_gate(
    gate: Gate,
    treatment: Mapping[str, float] | None,
    control: Mapping[str, float] | None,
    *,
    devices: int = 0,
    control_devices: int = 0,
    min_rows: float = 100.0,
    alpha: float = 0.01,
) -> GateResult:
    """Judge a monitoring gate on the stage's merged-sketch metrics (``treatment``) against
    the control group's (``control``, for ``baseline``). Pending while either group has fewer
    than ``min_rows`` merged rows (``monitor_rows``) or lacks the metric. An accuracy (which
    comes with an interval) fails only when it is beyond the bound at one-sided significance
    ``alpha``, as every other gate: 100 rows estimate an accuracy near 0.9 within +-6 points,
    and a good version must not be rolled back on that noise."""
    t = None if treatment is None else treatment.get(gate.metric)
    c = None if control is None else control.get(gate.metric)
    base = GateResult(gate.text, "pending", t, c, None, devices, control_devices)
    t_rows = 0.0 if treatment is None else treatment.get("monitor_rows", 0.0)
    if t is None or t_rows < min_rows:
        return _with(base, reason=f"stage: {t_rows:.0f} monitored rows with {gate.metric}; "
                                  f"too few (< {min_rows:g})")
    c_rows = 0.0 if control is None else control.get("monitor_rows", 0.0)
    if gate.relative and (c is None or c_rows < min_rows):
        return _with(base, reason=f"control: {c_rows:.0f} monitored rows; too few")
    bound = gate.bound(c)
    if gate.holds(t, c):
        return _with(base, status="pass", bound=bound, reason="within the bound")
    se = _interval_se(gate, treatment, control)
    if se is not None:  # an estimate with an interval: beyond the bound by more than noise?
        z = (bound - t) / se if gate.op in (">", ">=") else (t - bound) / se
        p = _p_upper(z)
        if p >= alpha:
            return _with(base, status="pass", bound=bound, p_value=p,
                         reason=f"{gate.metric} {t:.4g} not significantly beyond {bound:.4g} "
                                f"({t_rows:.0f} rows, p={p:.2g})")
        return _with(base, status="fail", bound=bound, p_value=p,
                     reason=f"{gate.metric} {t:.4g} beyond {bound:.4g} ({t_rows:.0f} rows, "
                            f"p={p:.2g})")
    return _with(base, status="fail", bound=bound,
                 reason=f"{gate.metric} {t:.4g} beyond {bound:.4g} ({t_rows:.0f} rows)")


# accuracy metrics whose report carries a 95 % interval (``_low``/``_high`` beside the value)
_WITH_INTERVAL = frozenset({"est_accuracy", "realized_accuracy"})
_Z95 = 1.959963984540054


def _interval_se(
    gate: Gate, treatment: Mapping[str, float] | None, control: Mapping[str, float] | None
) -> float | None:
    """The standard error of ``treatment - bound`` from the 95 % intervals the monitoring
    report gives (the half towards the bound, as Wilson's is not symmetric); a relative
    gate's bound adds the control's, scaled by the gate's slope. None without intervals."""
    if gate.metric not in _WITH_INTERVAL:
        return None

    def half(values: Mapping[str, float] | None, towards_low: bool) -> float | None:
        if values is None:
            return None
        v = values.get(gate.metric)
        end = values.get(f"{gate.metric}_{'low' if towards_low else 'high'}")
        if v is None or end is None or not (math.isfinite(v) and math.isfinite(end)):
            return None
        return abs(v - end) / _Z95

    lower_is_worse = gate.op in (">", ">=")
    se_t = half(treatment, towards_low=not lower_is_worse)  # the treatment's side to the bound
    if se_t is None:
        return None
    var = se_t * se_t
    if gate.relative:
        se_c = half(control, towards_low=lower_is_worse)
        if se_c is None:
            return None
        var += (gate.a * se_c) ** 2
    return math.sqrt(var) if var > 0 else None
