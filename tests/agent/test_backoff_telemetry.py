"""Back-off schedule and telemetry aggregation (pure, seeded)."""

from __future__ import annotations

import random

import numpy as np
import pytest

from edgeloop.agent import Backoff, Telemetry


def test_success_delay_is_the_interval_with_jitter():
    b = Backoff(interval=60, jitter=0.2, rng=random.Random(1))
    delays = [b.succeeded() for _ in range(500)]
    assert min(delays) >= 48 and max(delays) <= 72
    assert np.std(delays) > 3  # spread out, not lock-step


def test_failures_double_up_to_the_cap_and_reset():
    b = Backoff(interval=60, base=1, factor=2, cap=30, rng=random.Random(2))
    ceilings = []
    for _ in range(8):
        d = b.failed()
        ceilings.append(b.ceiling())
        assert b.ceiling() / 2 <= d <= b.ceiling()
    assert ceilings == [1, 2, 4, 8, 16, 30, 30, 30]
    assert 48 <= b.succeeded() <= 72
    assert b.failures == 0


def test_backoff_rejects_bad_parameters():
    with pytest.raises(ValueError, match="jitter"):
        Backoff(jitter=1.5)


def test_telemetry_percentiles_counts_and_window():
    t_now = [100.0]
    t = Telemetry(clock=lambda: t_now[0])
    for ms in range(1, 101):
        t.record(float(ms), ok=ms % 10 != 0)
    t.count("selftest_failures")
    t_now[0] = 130.0
    r = t.report("d-1", "m", 3, resources={"rss_mb": 42.0})
    m = r.metrics
    assert m["requests"] == 100 and m["errors"] == 10 and m["error_rate"] == pytest.approx(0.1)
    assert m["p50_ms"] == pytest.approx(50.5) and m["p99_ms"] == pytest.approx(99.01)
    assert m["selftest_failures"] == 1 and m["rss_mb"] == 42.0
    assert (r.device_id, r.model, r.version, r.window_s) == ("d-1", "m", 3, 30.0)
    # the next window starts empty
    assert t.metrics() == {"requests": 0.0, "errors": 0.0, "error_rate": 0.0}


def test_telemetry_reservoir_is_bounded_and_unbiased():
    t = Telemetry(reservoir=256, rng=random.Random(0))
    values = np.random.default_rng(0).exponential(10.0, 20_000)
    for v in values:
        t.record(float(v))
    assert len(t._latencies) == 256
    m = t.metrics()
    assert m["requests"] == 20_000
    assert m["p50_ms"] == pytest.approx(np.percentile(values, 50), rel=0.2)


def test_report_is_a_device_report_artifact():
    from edgeloop.artifacts import DeviceReport

    r = Telemetry().report("d-1", None, None, agent_version="0.1.0")
    assert DeviceReport.from_dict(r.to_dict()) == r
