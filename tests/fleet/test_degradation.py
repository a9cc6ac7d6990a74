"""Degradation: latency, error and self-test trends per version and cohort from telemetry."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from edgeloop.db import ReportRow, make_engine, write_session
from edgeloop.fleet._degradation import TelemetryPoint, degradation_trends
from edgeloop.fleet._http import utc_now


def _pt(at: float, version: int = 2, region: str = "north", **metrics: float) -> TelemetryPoint:
    return TelemetryPoint(at, version, {"region": region}, metrics)


def test_a_rising_error_rate_and_latency_in_one_cohort_are_flagged_there_only() -> None:
    points = [
        *(_pt(10.0, region=r, requests=1000, errors=2, p99_ms=10.0) for r in ("north", "south")),
        _pt(3700.0, region="north", requests=1000, errors=40, p99_ms=15.0),
        _pt(3700.0, region="south", requests=1000, errors=3, p99_ms=10.5),
    ]

    rows = {r["cohort"]: r for r in degradation_trends(points, start=0.0, bucket_s=3600.0)}

    north, south = rows["region=north"], rows["region=south"]
    assert north["degrading"] == ["error_rate", "p99_ms"]
    assert north["error_rate_change"] == pytest.approx(0.038)
    assert north["p99_ratio"] == pytest.approx(1.5)
    assert [b["error_rate"] for b in north["buckets"]] == [0.002, 0.04]
    assert south["degrading"] == []
    assert rows["*"]["buckets"][1]["errors"] == 43.0


def test_a_few_errors_on_little_traffic_are_not_a_trend() -> None:
    points = [_pt(10.0, requests=50, errors=0), _pt(3700.0, requests=50, errors=1)]

    (everyone, north) = degradation_trends(points, start=0.0, bucket_s=3600.0)

    assert everyone["error_rate_change"] == pytest.approx(0.02)
    assert everyone["error_rate_z"] < 3.0 and everyone["degrading"] == []


def test_self_test_failures_and_versions_are_kept_apart() -> None:
    points = [
        _pt(10.0, version=1, requests=10, errors=0),
        _pt(20.0, version=2, requests=10, errors=0, selftest_failures=2),
    ]

    rows = {
        (r["version"], r["cohort"]): r
        for r in degradation_trends(points, start=0.0, bucket_s=3600.0)
    }

    assert rows[(2, "*")]["degrading"] == ["selftest"] and rows[(2, "*")]["selftest_failures"] == 2
    assert rows[(1, "*")]["degrading"] == []


def test_malformed_stored_metrics_are_skipped() -> None:
    points = [
        _pt(10.0, requests=100, errors=200, p99_ms=float("nan")),
        _pt(10.0, requests=100, errors=1, p99_ms=-1.0),
    ]

    (row, _north) = degradation_trends(points, start=0.0, bucket_s=3600.0)

    assert row["buckets"][0]["requests"] == 100 and row["buckets"][0]["p99_ms"] is None


def test_monitor_status_serves_the_trends_per_version_and_cohort(sqlite_fleet: Any) -> None:
    fleet = sqlite_fleet
    north = fleet.device(labels={"region": "north"})
    south = fleet.device(labels={"region": "south"})
    earlier = utc_now() - timedelta(hours=2)
    engine = make_engine(fleet.settings.db_url)  # reports of an hour that has passed
    with write_session(engine) as s:
        for dev in (north, south):
            metrics = {"requests": 1000.0, "errors": 1.0, "p99_ms": 10.0}
            s.add(
                ReportRow(
                    device_id=dev.device_id,
                    received_at=earlier,
                    model="kws",
                    version=2,
                    window_s=60.0,
                    metrics=metrics,
                    report={},
                )
            )
    engine.dispose()
    for dev, errors, p99 in ((north, 50.0, 20.0), (south, 1.0, 10.0)):
        r = dev.post(
            "/v1/telemetry",
            {
                "device_id": dev.device_id,
                "model": "kws",
                "version": 2,
                "window_s": 60.0,
                "metrics": {"requests": 1000.0, "errors": errors, "p99_ms": p99},
            },
        )
        assert r.status_code == 202, r.text

    st = fleet.client.get("/v1/admin/monitor/status", headers=fleet.admin).json()

    rows = {(d["model"], d["version"], d["cohort"]): d for d in st["degradation"]}
    assert rows[("kws", 2, "region=north")]["degrading"] == ["error_rate", "p99_ms"]
    assert rows[("kws", 2, "region=south")]["degrading"] == []
    assert [b["requests"] for b in rows[("kws", 2, "*")]["buckets"]] == [2000.0, 2000.0]
