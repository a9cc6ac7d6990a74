"""Attack 3 of issue 13: one stage device reporting ``requests=1e6, errors=0`` turned a stage at
4 % errors (which failed its gate) into a pass. Now it cannot, through the real server either.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from edgeloop.fleet import DeviceSample, GateOptions, evaluate_gate, parse_gate
from edgeloop.fleet._gates import cap_weights
from live_fleet import LiveServer

GATE = parse_gate("error_rate<0.02")
RELATIVE = parse_gate("error_rate<1.5*baseline")


def _device(name: str, requests: float, errors: float, reports: int = 2) -> DeviceSample:
    per = {"requests": requests / reports, "errors": errors / reports}
    return DeviceSample(name, tuple(dict(per) for _ in range(reports)))


STAGE = [_device(f"t{i}", 100, 4) for i in range(10)]  # 4 % errors
CONTROL = [_device(f"c{i}", 100, 1) for i in range(30)]  # 1 % errors
POISON = _device("poison", 1e6, 0, reports=1)


@pytest.mark.parametrize("gate", [GATE, RELATIVE], ids=["absolute", "relative"])
def test_one_poisoning_device_no_longer_turns_a_failing_stage_into_a_pass(gate):
    before_fix = GateOptions(weight_cap=0.0, exclude_implausible=False)
    assert evaluate_gate(gate, STAGE, CONTROL).status == "fail"
    assert evaluate_gate(gate, [*STAGE, POISON], CONTROL, before_fix).status == "pass"  # attack

    result = evaluate_gate(gate, [*STAGE, POISON], CONTROL)

    assert result.status == "fail"
    assert result.extra["implausible_devices"] == ["poison"]
    assert result.p_value is not None and result.p_value < 1e-3


def test_a_control_device_claiming_many_errors_cannot_raise_the_baseline():
    liar = _device("liar", 1e6, 5e5, reports=1)  # 50 % errors "on the previous version"
    stage = [_device(f"t{i}", 100, 3) for i in range(10)]  # 3 %: 3x the honest control
    assert evaluate_gate(RELATIVE, stage, CONTROL).status == "fail"

    result = evaluate_gate(RELATIVE, stage, [*CONTROL, liar])

    assert result.status == "fail" and "liar" in result.extra["implausible_devices"]


def test_an_honest_device_with_no_errors_is_kept():
    stage = [*STAGE[:9], _device("quiet", 100, 0)]  # zero errors in 100 is plausible at 4 %
    result = evaluate_gate(GATE, stage, CONTROL)
    assert "implausible_devices" not in result.extra
    assert result.devices == 10


def test_weights_are_capped_at_a_multiple_of_the_median_device():
    counts = [(1.0, 100.0), (2.0, 100.0), (0.0, 120.0), (30.0, 3000.0)]
    assert cap_weights(counts, 3.0) == [(1.0, 100.0), (2.0, 100.0), (0.0, 120.0), (3.0, 300.0)]
    assert cap_weights(counts[:1], 3.0) == counts[:1]  # one device: nothing to compare with


# --- through the real server -----------------------------------------------------------------


@pytest.fixture
def server(tmp_path) -> Iterator[LiveServer]:
    live = LiveServer(tmp_path).start()
    try:
        yield live
    finally:
        live.stop()


@pytest.mark.slow
def test_the_poisoning_report_is_stored_but_cannot_outvote_the_stage(server):
    """The report is within ingest's bounds (an hour at 278 requests/s), so the server keeps
    it; the gate judges the stage from what the server stored, as a rollout tick does."""
    from datetime import datetime, timedelta, timezone

    from edgeloop.db import make_engine, read_session
    from edgeloop.fleet._rollout_store import _samples

    poisoner = server.device()
    honest = [server.device() for _ in range(10)]
    for d in honest:
        assert d.report(requests=100, errors=4).status_code == 202
    r = poisoner.post(
        "/v1/telemetry",
        {
            "device_id": poisoner.device_id,
            "model": "m",
            "version": 1,
            "window_s": 3600.0,
            "metrics": {"requests": 1e6, "errors": 0},
        },
    )
    assert r.status_code == 202, r.text

    class Row:  # what _samples reads of a rollout row
        model = "m"

    engine = make_engine(server.db)
    try:
        with read_session(engine) as s:
            since = datetime.now(timezone.utc) - timedelta(hours=1)
            stage = _samples(s, Row(), 1, since, None)  # type: ignore[arg-type]
    finally:
        engine.dispose()
    assert len(stage) == 11
    result = evaluate_gate(GATE, stage, CONTROL)
    assert result.status == "fail"
    assert result.extra["implausible_devices"] == [poisoner.device_id]


def test_counts_stored_before_validation_cannot_break_the_rate_test():
    """Attack 2's report (negative ``errors``) raised ``math domain error`` in every tick; the
    gates now clamp each device's numerator to [0, requests]."""
    stored = [*STAGE, _device("negative", 100, -1000), _device("over", 10, 50)]
    result = evaluate_gate(GATE, stored, CONTROL)
    assert result.status == "fail" and result.p_value is not None
