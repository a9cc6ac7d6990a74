"""Attack 2 and point 8 of issue 13: telemetry a device sends cannot hurt the fleet.

The real server on loopback; every refusal is a 400 naming the field, with no traceback in the
server's log and nothing changed in the database.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from edgeloop.artifacts import DeviceReport
from edgeloop.fleet._store import Refused
from edgeloop.fleet._telemetry import TelemetryLimits, is_count, validate_report
from live_fleet import LiveDevice, LiveServer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = LiveServer(tmp_path_factory.mktemp("telemetry")).start()
    try:
        yield live
    finally:
        live.stop()


@pytest.fixture(scope="module")
def device(server: LiveServer) -> LiveDevice:
    return server.device()


def _body(device: LiveDevice, metrics: str, window: str = "60.0", extra: str = "") -> bytes:
    """A report written by hand, so NaN and Infinity go out as JSON's non-standard tokens."""
    return (
        f'{{"device_id": "{device.device_id}", "model": "m", "version": 1, '
        f'"window_s": {window}, "metrics": {metrics}{extra}}}'
    ).encode()


def test_negative_errors_are_refused_and_change_nothing(server, device):
    before = server.snapshot()
    r = device.report(requests=100, errors=-5)
    assert r.status_code == 400
    assert "'errors'" in r.json()["detail"] and "count >= 0" in r.json()["detail"]
    assert server.snapshot() == before


@pytest.mark.parametrize(
    ("metrics", "window", "expected"),
    [
        ('{"requests": NaN, "errors": 0}', "60.0", "finite"),
        ('{"requests": 10, "p99_ms": Infinity}', "60.0", "finite"),
        ('{"requests": "many", "errors": 0}', "60.0", "a number"),
        ('{"requests": 10, "p99_ms": "fast"}', "60.0", "a number"),
        ('{"requests": true}', "60.0", "a number"),
        ('{"requests": 10, "errors": 11}', "60.0", "at most requests"),
        ('{"requests": 1e12, "errors": 0}', "60.0", "window"),
        ('{"requests": 10, "error_rate": 1.5}', "60.0", "within [0, 1]"),
        ('{"requests": 10, "personal_gain": 1.5}', "60.0", "within [-1, 1]"),
        ('{"requests": 10, "personal_active": -1}', "60.0", "within [0, 1]"),
        ('{"requests": 10, "bytes_downloaded": 1e300}', "60.0", "within [0, 1.09951e+12]"),
        ('{"requests": 10, "delta_bytes_downloaded": -5}', "60.0", "within [0, 1.09951e+12]"),
        ('{"requests": 10}', "NaN", "window_s"),
        ('{"requests": 10}', "-1", "window_s"),
        ('{"requests": 10}', '"long"', "window_s"),
        ("[1, 2]", "60.0", "metrics"),
    ],
)
def test_malformed_reports_get_400_with_the_reason(server, device, metrics, window, expected):
    before = server.snapshot()
    r = device.post_raw("/v1/telemetry", _body(device, metrics, window))
    assert r.status_code == 400, r.text
    assert expected in r.json()["detail"]
    assert server.snapshot() == before


def test_deeply_nested_fields_are_refused_cleanly(server, device):
    before = server.snapshot()
    deep = ', "note": ' + "[" * 50 + "]" * 50
    r = device.post_raw("/v1/telemetry", _body(device, '{"requests": 1}', extra=deep))
    assert r.status_code == 400 and "nested" in r.json()["detail"]
    deeper = ', "note": ' + "[" * 100_000 + "]" * 100_000  # past Python's recursion limit
    r = device.post_raw("/v1/telemetry", _body(device, '{"requests": 1}', extra=deeper))
    assert r.status_code == 400 and "not JSON" in r.json()["detail"]
    assert server.snapshot() == before


def test_a_good_report_is_still_accepted(server, device):
    r = device.report(requests=120, errors=3, error_rate=0.025, p99_ms=8.5, installs=1)
    assert r.status_code == 202, r.text
    stored = server.rows(
        "SELECT metrics FROM fleet_reports WHERE device_id = :d", d=device.device_id
    )
    assert [json.loads(m) for (m,) in stored][-1]["errors"] == 3


def test_no_refusal_left_a_traceback_or_a_500(server, device):
    # runs after the others in this module (pytest keeps file order)
    assert "Traceback" not in server.output
    metrics = httpx.get(server.url + "/metrics").text
    assert 'status="500"' not in metrics


def test_a_stored_string_metric_cannot_break_the_device_page(server, device):
    # a row from before ingest validated reports: a string and a NaN where numbers belong
    engine_row = {"requests": "lots", "errors": float("nan"), "p99_ms": "slow"}
    report = {"device_id": device.device_id, "version": 1, "metrics": engine_row}
    import sqlalchemy as sa

    engine = sa.create_engine(server.db)
    with engine.begin() as c:
        c.execute(
            sa.text(
                "INSERT INTO fleet_reports (device_id, received_at, model, version, window_s, "
                "metrics, report) VALUES (:d, CURRENT_TIMESTAMP, 'm', 1, 60.0, :m, :r)"
            ),
            {"d": device.device_id, "m": json.dumps(engine_row), "r": json.dumps(report)},
        )
    engine.dispose()
    token = (server.data / "admin-token").read_text().strip()
    with httpx.Client(base_url=server.url) as client:
        client.post("/dashboard/login", data={"token": token})
        page = client.get(f"/dashboard/devices/{device.device_id}")
    assert page.status_code == 200, page.text[:300]
    assert device.device_id in page.text and '<td class="num">-</td>' in page.text


# --- the validator on its own (pure) ---------------------------------------------------------


def _report(**metrics: Any) -> DeviceReport:
    return DeviceReport(device_id="d", model="m", version=1, window_s=10.0, metrics=metrics)


def test_counts_are_bounded_by_the_window_at_the_limit_rate():
    limits = TelemetryLimits(max_rate=100.0)
    validate_report(_report(requests=1000.0, errors=0.0), limits)  # exactly 10 s x 100/s
    with pytest.raises(Refused, match="at most 1000 in a 10 s window") as e:
        validate_report(_report(requests=1001.0, errors=0.0), limits)
    assert e.value.status == 400


def test_which_metrics_are_counts():
    assert [is_count(m) for m in ("requests", "errors", "timeouts", "p99_ms", "uptime_s")] == [
        True,
        True,
        True,
        False,
        False,
    ]


def test_errors_are_bounded_by_requests_but_other_counts_are_not():
    with pytest.raises(Refused, match="'errors'.*at most requests"):
        validate_report(_report(requests=5.0, errors=6.0))
    validate_report(_report(requests=0.0, errors=0.0, installs=1.0, poll_failures=2.0))
    with pytest.raises(Refused, match="'installs'.*count >= 0"):
        validate_report(_report(requests=0.0, installs=-1.0))


def test_a_real_agents_report_is_accepted():
    from edgeloop.agent import Telemetry

    t = Telemetry()
    t.count("installs")
    t.count("poll_failures", 3)
    validate_report(t.report("d-1", "m", 1))  # no requests yet, but installs


def test_the_personal_head_gauges_are_bounded():
    validate_report(_report(requests=1.0, personal_gain=-0.25, personal_active=1.0))
    with pytest.raises(Refused, match="within"):
        validate_report(_report(requests=1.0, personal_gain=-1.5))


def test_the_download_totals_are_bounded():
    validate_report(_report(requests=1.0, bytes_downloaded=3e6, delta_bytes_downloaded=4e5))
    with pytest.raises(Refused, match="bytes_downloaded"):
        validate_report(_report(requests=1.0, bytes_downloaded=1e300))
