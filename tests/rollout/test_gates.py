"""Gate expressions and the statistical tests behind them (pure: values in, decisions out)."""

from __future__ import annotations

import random

import pytest

from edgeloop.errors import RolloutError
from edgeloop.fleet import DeviceSample, GateOptions, evaluate_gate, parse_gate


@pytest.mark.parametrize(
    ("text", "metric", "op", "a", "b"),
    [
        ("error_rate<0.01", "error_rate", "<", 0.0, 0.01),
        ("p99_ms<=1.2*baseline", "p99_ms", "<=", 1.2, 0.0),
        ("p99_ms <= baseline * 1.2 + 5", "p99_ms", "<=", 1.2, 5.0),
        ("accuracy>=baseline-0.02", "accuracy", ">=", 1.0, -0.02),
        ("x<(baseline+2)/2", "x", "<", 0.5, 1.0),
        ("selftest_failures<1e-9", "selftest_failures", "<", 0.0, 1e-9),
    ],
)
def test_parse(text, metric, op, a, b):
    g = parse_gate(text)
    assert (g.metric, g.op) == (metric, op)
    assert g.a == pytest.approx(a) and g.b == pytest.approx(b)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("p99_ms<=baseline*baseline", "baseline\\*baseline"),
        ("p99_ms<=__import__('os').system('x')", "unexpected"),
        ("p99_ms==3", "METRIC OP EXPR"),
        ("p99_ms<=1/0", "non-zero"),
        ("p99_ms<=1/baseline", "non-zero"),
        ("p99_ms<=(1+2", "expected '\\)'|ends early"),
        ("p99_ms<=2 3", "unexpected '3'"),
        ("", "METRIC OP EXPR"),
    ],
)
def test_parse_refuses(text, match):
    with pytest.raises(RolloutError, match=match):
        parse_gate(text)


def _device(rng, i, err=0.002, lat=10.0, reports=4, requests=50, prefix="d"):
    out = []
    for _ in range(reports):
        e = sum(rng.random() < err for _ in range(requests))
        out.append(
            {
                "requests": requests,
                "errors": e,
                "error_rate": e / requests,
                "p99_ms": lat * rng.lognormvariate(0, 0.25),
            }
        )
    return DeviceSample(f"{prefix}{i}", tuple(out))


GATES = ["error_rate<0.01", "error_rate<=2*baseline+0.005", "p99_ms<=1.2*baseline", "p99_ms<15"]


@pytest.mark.parametrize("gate", GATES)
def test_good_version_under_noise_is_not_failed(gate):
    """100 noisy stages of a version exactly like the control: no gate ever fails."""
    g = parse_gate(gate)
    statuses = []
    for seed in range(100):
        rng = random.Random(seed)
        control = [_device(rng, i, prefix="c") for i in range(40)]
        stage = [_device(rng, i, reports=rng.randint(1, 5)) for i in range(rng.randint(2, 30))]
        statuses.append(evaluate_gate(g, stage, control).status)
    assert "fail" not in statuses
    assert statuses.count("pass") > 50


def test_bad_error_rate_fails():
    rng = random.Random(1)
    control = [_device(rng, i) for i in range(40)]
    stage = [_device(rng, i, err=0.05) for i in range(10)]
    for gate in GATES[:2]:
        r = evaluate_gate(parse_gate(gate), stage, control)
        assert r.status == "fail" and r.p_value is not None and r.p_value < 0.01
        assert r.treatment == pytest.approx(0.05, abs=0.02)


def test_latency_regression_fails_against_the_control_group():
    rng = random.Random(2)
    control = [_device(rng, i, lat=10.0) for i in range(40)]
    stage = [_device(rng, i, lat=16.0) for i in range(10)]
    r = evaluate_gate(parse_gate("p99_ms<=1.2*baseline"), stage, control)
    assert r.status == "fail" and r.bound == pytest.approx(1.2 * r.control)
    same = evaluate_gate(parse_gate("p99_ms<=1.2*baseline"), stage, stage)  # no regression
    assert same.status == "pass"


@pytest.mark.parametrize(
    ("gate", "kind"), [("error_rate<0.01", "err"), ("p99_ms<=1.2*baseline", "lat")]
)
def test_one_bad_device_among_many_is_caught(gate, kind):
    rng = random.Random(3)
    control = [_device(rng, i, prefix="c") for i in range(100)]
    stage = [_device(rng, i) for i in range(99)]
    broken = _device(rng, 99, err=0.5) if kind == "err" else _device(rng, 99, lat=100.0)
    r = evaluate_gate(parse_gate(gate), [*stage, broken], control)
    assert r.status == "fail" and r.bad_devices == ("d99",)
    assert evaluate_gate(parse_gate(gate), stage, control).status == "pass"


def test_minimum_sample_size_keeps_a_gate_pending():
    rng = random.Random(4)
    control = [_device(rng, i, prefix="c") for i in range(40)]
    opts = GateOptions(min_devices=3, min_requests=500)
    few = [_device(rng, i, err=0.05, requests=10, reports=1) for i in range(2)]
    r = evaluate_gate(parse_gate("error_rate<0.01"), few, control, opts)
    assert r.status == "pending" and "too few" in r.reason
    r = evaluate_gate(parse_gate("p99_ms<=1.2*baseline"), few, control[:2], opts)
    assert r.status == "pending" and "control" in r.reason
    # a one-device stage needs only that device (min_devices capped at the stage size)
    one = [_device(rng, 0, reports=4, requests=200)]
    assert (
        evaluate_gate(parse_gate("error_rate<0.01"), one, control, opts, stage_size=1).status
        == "pass"
    )


def test_lower_is_worse_gates():
    rng = random.Random(5)
    control = [
        DeviceSample(f"c{i}", ({"accuracy": 0.9 + rng.gauss(0, 0.005)},) * 3) for i in range(20)
    ]
    good = [
        DeviceSample(f"d{i}", ({"accuracy": 0.9 + rng.gauss(0, 0.005)},) * 3) for i in range(10)
    ]
    worse = [
        DeviceSample(f"d{i}", ({"accuracy": 0.8 + rng.gauss(0, 0.005)},) * 3) for i in range(10)
    ]
    g = parse_gate("accuracy>=baseline-0.02")
    assert evaluate_gate(g, good, control).status == "pass"
    assert evaluate_gate(g, worse, control).status == "fail"


# --- monitoring metrics: group values from merged sketches --------------------------------


def test_monitoring_metrics_are_gate_metrics():
    from edgeloop.fleet import MONITOR_METRICS

    assert {"drift_psi_max", "est_accuracy", "realized_accuracy"} <= MONITOR_METRICS


@pytest.mark.parametrize(
    ("text", "treatment", "control", "status"),
    [
        ("drift_psi_max<0.2", {"drift_psi_max": 0.05, "monitor_rows": 500}, None, "pass"),
        ("drift_psi_max<0.2", {"drift_psi_max": 0.4, "monitor_rows": 500}, None, "fail"),
        ("drift_psi_max<0.2", {"drift_psi_max": 0.4, "monitor_rows": 50}, None, "pending"),
        ("drift_psi_max<0.2", None, None, "pending"),
        ("est_accuracy>=baseline-0.02", {"est_accuracy": 0.80, "monitor_rows": 500},
         {"est_accuracy": 0.81, "monitor_rows": 500}, "pass"),
        ("est_accuracy>=baseline-0.02", {"est_accuracy": 0.70, "monitor_rows": 500},
         {"est_accuracy": 0.81, "monitor_rows": 500}, "fail"),
        ("est_accuracy>=baseline-0.02", {"est_accuracy": 0.70, "monitor_rows": 500},
         {"est_accuracy": 0.81, "monitor_rows": 10}, "pending"),
    ],
)
def test_group_gate(text, treatment, control, status):
    from edgeloop.fleet import evaluate_group_gate

    r = evaluate_group_gate(parse_gate(text), treatment, control, min_rows=100)
    assert r.status == status, r.reason
    if status != "pending":
        assert r.bound == pytest.approx(
            0.2 if "psi" in text else control["est_accuracy"] - 0.02)


def test_an_accuracy_gate_fails_only_beyond_its_interval():
    """100 rows put an estimate of 0.897 within +-6 points: below a 0.9 floor by noise, not
    significantly (the closed loop's good fix was once rolled back on that). Far below, or
    with a narrow interval, it fails; a relative gate adds the control's interval."""
    from edgeloop.fleet import evaluate_group_gate

    gate = parse_gate("est_accuracy>=0.9")
    noisy = {"est_accuracy": 0.897, "est_accuracy_low": 0.838, "est_accuracy_high": 0.956,
             "monitor_rows": 100}
    r = evaluate_group_gate(gate, noisy, None)
    assert r.status == "pass" and r.p_value is not None and r.p_value > 0.4, r.reason
    assert "not significantly" in r.reason
    far = {**noisy, "est_accuracy": 0.70, "est_accuracy_low": 0.64, "est_accuracy_high": 0.76}
    r = evaluate_group_gate(gate, far, None)
    assert r.status == "fail" and r.p_value is not None and r.p_value < 0.01, r.reason
    narrow = {"est_accuracy": 0.88, "est_accuracy_low": 0.875, "est_accuracy_high": 0.885,
              "monitor_rows": 20000}
    assert evaluate_group_gate(gate, narrow, None).status == "fail"
    # realized accuracy's Wilson interval: the half towards the bound is the one used
    real = parse_gate("realized_accuracy>=0.9")
    few = {"realized_accuracy": 0.85, "realized_accuracy_low": 0.70,
           "realized_accuracy_high": 0.93, "monitor_rows": 100}
    assert evaluate_group_gate(real, few, None).status == "pass"
    # relative: treatment 0.05 under a control with a wide interval passes, a narrow one fails
    rel = parse_gate("est_accuracy>=baseline-0.02")
    t = {"est_accuracy": 0.76, "est_accuracy_low": 0.74, "est_accuracy_high": 0.78,
         "monitor_rows": 500}
    wide = {"est_accuracy": 0.81, "est_accuracy_low": 0.69, "est_accuracy_high": 0.93,
            "monitor_rows": 500}
    tight = {**wide, "est_accuracy_low": 0.80, "est_accuracy_high": 0.82}
    assert evaluate_group_gate(rel, t, wide).status == "pass"
    assert evaluate_group_gate(rel, t, tight).status == "fail"
    # a metric without an interval is still judged by its value
    psi = {"drift_psi_max": 0.21, "monitor_rows": 500}
    assert evaluate_group_gate(parse_gate("drift_psi_max<0.2"), psi, None).status == "fail"


def test_a_device_is_judged_against_the_quantiles_of_a_large_control() -> None:
    """With thousands of control reports a device's own test uses 256 evenly spaced quantiles
    of them (an exact test against all of them took seconds per device at 1,000 devices):
    a slow device is still caught, a device like the control is not."""
    from edgeloop.fleet._gates import REFERENCE_REPORTS, _quantiles

    rng = random.Random(7)
    values = [rng.lognormvariate(0, 0.2) for _ in range(6000)]
    q = _quantiles(values, REFERENCE_REPORTS)
    assert len(q) == REFERENCE_REPORTS and q[0] == min(values) and q[-1] == max(values)
    assert q == sorted(q) and _quantiles([3.0, 1.0], 256) == [1.0, 3.0]
    control = [
        DeviceSample(f"c{i}", tuple({"p99_ms": 10 * rng.lognormvariate(0, 0.2)} for _ in range(6)))
        for i in range(1000)
    ]
    stage = [
        DeviceSample(f"t{i}", tuple({"p99_ms": 10 * rng.lognormvariate(0, 0.2)} for _ in range(6)))
        for i in range(20)
    ]
    slow = DeviceSample(
        "slow", tuple({"p99_ms": 25 * rng.lognormvariate(0, 0.1)} for _ in range(6))
    )
    gate = parse_gate("p99_ms<=1.2*baseline")
    result = evaluate_gate(gate, [*stage, slow], control, GateOptions(), stage_size=21)
    assert result.status == "fail" and result.bad_devices == ("slow",)
    assert evaluate_gate(gate, stage, control, GateOptions(), stage_size=20).status == "pass"
