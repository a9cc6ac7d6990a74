"""Monitoring in the fleet server: references stored at publish, sketches validated at the
telemetry route (400 with a reason otherwise, nothing stored), evaluation by cohort with
hysteresis, alert actions (pause a rollout, webhook), re-baselining, the report."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from classifier_model import CLASSES, classifier_bytes, probabilities, reference, sample
from edgeloop.artifacts import ModelCard, sha256_bytes
from edgeloop.bundle import load_public_key, load_signing_key, pack
from edgeloop.db import MonitorSketchRow, ReportRow, make_engine, read_session
from edgeloop.fleet import FleetSettings, create_app
from edgeloop.monitor.sketch import MonitorReference, WindowSketch, build_reference
from edgeloop.registry import Registry

from .conftest import Device, Fleet


@pytest.fixture(scope="module")
def ref() -> MonitorReference:
    return reference()


@pytest.fixture
def mfleet(tmp_path: Path, db_url: str) -> Iterator[Fleet]:
    """The app in-process on SQLite and on PostgreSQL, evaluating only when asked."""
    settings = FleetSettings(
        db_url=db_url, data_dir=tmp_path / "data",
        poll_interval_s=30.0, monitor_interval_s=0, monitor_raise_after=2,
        monitor_clear_after=2, monitor_pause_rollouts=True, create_release_keys=True,
    )
    with TestClient(create_app(settings)) as client:
        yield Fleet(settings, client, tmp_path)


def publish(fleet: Fleet, version: int, ref: MonitorReference | None) -> None:
    keys = fleet.settings.keys_path
    model = classifier_bytes()
    data = pack(model, ModelCard(name="clf", sha256=sha256_bytes(model)), version,
                load_signing_key(keys / "release.pem"), [load_public_key(keys / "fleet.pub.pem")],
                reference=ref)
    path = fleet.tmp / f"clf-{version}.elb"
    path.write_bytes(data)
    src = fleet.tmp / f"clf-{version}.onnx"
    src.write_bytes(model)
    with Registry(fleet.settings.db_url, fleet.settings.registry_path) as reg:
        reg.push(src, "clf", version=version, bundles=[(path, "fp32", {})])
    r = fleet.client.post("/v1/admin/releases", json={"model": "clf", "version": version},
                          headers=fleet.admin)
    assert r.status_code == 201, r.text


def window(ref: MonitorReference, n: int, seed: int, shift: float = 0.0) -> dict[str, Any]:
    x, _ = sample(n, np.random.default_rng(seed), shift)
    s = WindowSketch(ref)
    s.update(x, probabilities(x))
    return s.to_dict()


def report(device: Device, version: int | None, sketch: dict[str, Any] | None) -> Any:
    body: dict[str, Any] = {"device_id": device.device_id, "model": "clf", "version": version,
                            "window_s": 60.0, "metrics": {"requests": 10.0}}
    if sketch is not None:
        body["sketch"] = sketch
    return device.post("/v1/telemetry", body)


def counts(fleet: Fleet) -> tuple[int, int]:
    engine = make_engine(fleet.settings.db_url)
    try:
        with read_session(engine) as s:
            return (s.scalar(sa.select(sa.func.count()).select_from(ReportRow)) or 0,
                    s.scalar(sa.select(sa.func.count()).select_from(MonitorSketchRow)) or 0)
    finally:
        engine.dispose()


def test_publish_stores_the_bundles_reference_and_lineage(mfleet, ref):
    publish(mfleet, 1, ref)
    r = mfleet.client.get("/v1/admin/monitor/references/clf/1", headers=mfleet.admin)
    assert [(x["sha256"], x["origin"]) for x in r.json()["references"]] == [
        (ref.digest(), "bundle")]
    with Registry(mfleet.settings.db_url, mfleet.settings.registry_path) as reg:
        roles = {(c.role, c.sha256) for c in reg.lineage("clf@1").children}
    assert ("monitor_reference", ref.digest()) in roles


def test_a_valid_sketch_is_stored_with_the_report(mfleet, ref):
    publish(mfleet, 1, ref)
    d = mfleet.device(labels={"region": "north"})
    r = report(d, 1, window(ref, 50, 0))
    assert r.status_code == 202, r.text
    assert counts(mfleet) == (1, 1)


def test_a_devices_sketches_of_one_window_are_stored_as_their_sum(mfleet, ref):
    publish(mfleet, 1, ref)
    d = mfleet.device()
    for seed in range(3):
        assert report(d, 1, window(ref, 40, seed)).status_code == 202
    engine = make_engine(mfleet.settings.db_url)
    try:
        with read_session(engine) as s:
            rows = list(s.scalars(sa.select(MonitorSketchRow)))
            assert [(r.n, r.sketch["n"]) for r in rows] == [(120, 120)]
    finally:
        engine.dispose()
    assert counts(mfleet) == (3, 1)


@pytest.mark.parametrize(
    ("mutate", "version", "reason"),
    [
        (lambda s: s.update(reference_sha256="0" * 64), 1, "made against reference"),
        (lambda s: s.update(n=-1), 1, "sketch.n"),
        (lambda s: s["hist"][0].__setitem__(0, s["hist"][0][0] + 1), 1, "sum to 'finite'"),
        (lambda s: s.update(pred=[1, 2]), 1, "sketch.pred"),
        (lambda s: None, 2, "no monitoring reference"),
        (lambda s: None, None, "model and version"),
    ],
)
def test_a_bad_sketch_is_refused_with_the_reason_and_nothing_is_stored(
    mfleet, ref, mutate, version, reason
):
    publish(mfleet, 1, ref)
    publish(mfleet, 2, None)
    d = mfleet.device()
    sketch = window(ref, 50, 0)
    mutate(sketch)
    r = report(d, version, sketch)
    assert r.status_code == 400 and reason in r.json()["detail"], r.text
    assert counts(mfleet) == (0, 0)


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda s: s["white_sum"].pop(), "sketch.white_sum"),
        (lambda s: s["white_sum"].__setitem__(0, 1e300), "sketch.white_sum"),
        (lambda s: s["white_sum"].__setitem__(0, "NaN"), "sketch.white_sum"),
        (lambda s: s.update(white_n=s["n"] + 1), "sketch.white_n"),
        (lambda s: s.pop("white_n"), "sketch.white_n"),
    ],
)
def test_hostile_whitened_sums_are_refused_with_the_reason(mfleet, mutate, reason):
    # a reference that watches the 4 inputs through a projection, with its whitening
    x, y = sample(4000, np.random.default_rng(7))
    wref = build_reference(x, probabilities(x), y, classes=CLASSES, max_features=2,
                           components=2)
    assert wref.projection is not None and wref.projection.whiten is not None
    publish(mfleet, 1, wref)
    d = mfleet.device()
    good = window(wref, 50, 0)
    assert len(good["white_sum"]) == 4 and good["white_n"] == 50
    mutate(good)
    r = report(d, 1, good)
    assert r.status_code == 400 and reason in r.json()["detail"], r.text
    assert counts(mfleet) == (0, 0)


def evaluate(fleet: Fleet) -> dict[str, dict[str, Any]]:
    r = fleet.client.post("/v1/admin/monitor/evaluate", json={}, headers=fleet.admin)
    assert r.status_code == 200, r.text
    return {x["cohort"]: x for x in r.json()["results"]}


def test_drift_on_one_cohort_raises_its_alert_after_two_windows_and_pauses_a_rollout(
    mfleet, ref
):
    publish(mfleet, 1, ref)
    publish(mfleet, 2, ref)
    north = [mfleet.device(labels={"region": "north"}) for _ in range(2)]
    south = [mfleet.device(labels={"region": "south"}) for _ in range(6)]
    for dev in (*north, *south):  # devices on v1 (what the rollout's control runs)
        assert dev.checkin({"model": "clf", "version": 1, "variant": "fp32",
                            "sha256": "0" * 64}).status_code == 200
    r = mfleet.client.put("/v1/admin/models/clf/desired", json={"version": 1},
                          headers=mfleet.admin)
    assert r.status_code == 200, r.text
    r = mfleet.client.post("/v1/admin/rollouts", json={"model": "clf", "version": 2,
                                                        "stages": [10, 100], "soak_s": 3600},
                           headers=mfleet.admin)
    assert r.status_code == 201, r.text
    rollout = r.json()["id"]
    seeds = iter(range(1000))
    results = []
    for _ in range(2):
        for dev in north:
            assert report(dev, 1, window(ref, 400, next(seeds), shift=1.0)).status_code == 202
        for dev in south:
            assert report(dev, 1, window(ref, 400, next(seeds))).status_code == 202
        results.append(evaluate(mfleet))
    first, second = results
    assert first["region=north"]["alarm"] is True and first["region=north"]["event"] is None
    assert second["region=north"]["event"] == "raised"
    assert "x0" in second["region=north"]["report"]["drifted"]
    assert second["region=south"]["alarm"] is False and second["region=south"]["event"] is None
    assert second["region=north"]["actions"] == [f"paused rollout {rollout}"]
    # the fleet-wide report compares the regions (bias): estimated accuracy per segment
    segments = second["*"]["report"]["segments"]["region"]["segments"]
    assert set(segments) == {"north", "south"} and "est_accuracy" in segments["north"]
    r = mfleet.client.get(f"/v1/admin/rollouts/{rollout}", headers=mfleet.admin)
    assert r.json()["state"] == "paused" and "region=north" in r.json()["reason"]
    status = mfleet.client.get("/v1/admin/monitor/status", headers=mfleet.admin).json()
    active = {a["cohort"] for a in status["alerts"] if a["active"]}
    assert "region=north" in active and "region=south" not in active
    assert [(e["event"], e["cohort"]) for e in status["events"]
            if e["cohort"] == "region=north"] == [("raised", "region=north")]
    # no new sketches: evaluating again steps nothing
    assert evaluate(mfleet) == {}
    # the dashboard lists the alert and links the version's report
    r = mfleet.client.post("/dashboard/login", data={"token": mfleet.admin_token},
                           follow_redirects=False)
    assert r.status_code == 303
    page = mfleet.client.get("/dashboard").text
    table = page[page.index('id="monitor-alerts"'):page.index('id="rollouts"')]
    assert "region=north" in table and "ACTIVE" in table
    assert "/dashboard/monitor/clf/1?cohort=region%3Dnorth" in table
    report_page = mfleet.client.get("/dashboard/monitor/clf/1",
                                    params={"cohort": "region=north"}).text
    assert "Monitoring report: clf@1" in report_page and "data:image/png" in report_page


def test_the_report_json_and_html(mfleet, ref):
    publish(mfleet, 1, ref)
    dev = mfleet.device(labels={"region": "north"})
    for seed in range(2):
        report(dev, 1, window(ref, 300, seed, shift=1.0))
        evaluate(mfleet)
    r = mfleet.client.get("/v1/admin/monitor/report/clf/1", params={"cohort": "region=north"},
                          headers=mfleet.admin)
    body = r.json()
    assert r.status_code == 200 and len(body["evaluations"]) == 2
    assert body["latest"]["metrics"]["drift_psi_max"] > 0.1
    r = mfleet.client.get("/v1/admin/monitor/report/clf/1", params={"cohort": "oops"},
                          headers=mfleet.admin)
    assert r.status_code == 400 and "LABEL=VALUE" in r.json()["detail"]
    html = mfleet.client.get("/v1/admin/monitor/report/clf/1/html",
                             params={"cohort": "region=north"}, headers=mfleet.admin).text
    assert html.count("data:image/png;base64,") == 3 and "id='tests'" in html
    fleet_wide = mfleet.client.get("/v1/admin/monitor/report/clf/1/html",
                                   headers=mfleet.admin).text
    assert "Segments (bias)" in fleet_wide and "by region" in fleet_wide
    assert mfleet.client.get("/v1/admin/monitor/report/clf/9", headers=mfleet.admin
                             ).status_code == 404


def test_rebaselining_is_explicit_and_recorded(mfleet, ref):
    publish(mfleet, 1, ref)
    x, y = sample(2000, np.random.default_rng(5), shift=1.0)
    new = build_reference(x, probabilities(x), y, classes=CLASSES)
    url = "/v1/admin/monitor/references/clf/1"
    r = mfleet.client.post(url, json={"reference": new.to_dict()}, headers=mfleet.admin)
    assert r.status_code == 400
    r = mfleet.client.post(url, json={"reference": new.to_dict(), "reason": "tuned on north"},
                           headers=mfleet.admin)
    assert r.status_code == 201, r.text
    hist = mfleet.client.get(url, headers=mfleet.admin).json()["references"]
    assert [h["origin"] for h in hist] == ["bundle", "rebaseline"]
    with Registry(mfleet.settings.db_url, mfleet.settings.registry_path) as reg:
        roles = [c.role for c in reg.lineage("clf@1").children]
    assert "monitor_rebaseline" in roles
    # the old reference's sketches are refused now; the new one's accepted
    d = mfleet.device()
    assert report(d, 1, window(ref, 50, 0)).status_code == 400
    assert report(d, 1, window(new, 50, 0)).status_code == 202


def test_a_monitoring_gate_judges_the_stage_from_its_sketches(mfleet, ref):
    from edgeloop.db import RolloutRow, write_session
    from edgeloop.fleet._http import utc_now
    from edgeloop.fleet._rollout_store import observe

    publish(mfleet, 1, ref)
    publish(mfleet, 2, ref)
    devices = [mfleet.device() for _ in range(6)]
    for dev in devices:
        dev.checkin({"model": "clf", "version": 1, "variant": "fp32", "sha256": "0" * 64})
    mfleet.client.put("/v1/admin/models/clf/desired", json={"version": 1}, headers=mfleet.admin)
    r = mfleet.client.post("/v1/admin/rollouts", headers=mfleet.admin, json={
        "model": "clf", "version": 2, "stages": [100], "soak_s": 3600, "min_devices": 1,
        "gates": ["drift_psi_max<0.2", "est_accuracy>=baseline-0.02"]})
    assert r.status_code == 201, r.text
    for i, dev in enumerate(devices):  # every device in the 100 % stage reports v2, drifted
        assert report(dev, 2, window(ref, 300, i, shift=1.5)).status_code == 202
    engine = make_engine(mfleet.settings.db_url)
    try:
        with write_session(engine) as s:
            row = s.get(RolloutRow, r.json()["id"])
            obs = observe(s, row, utc_now())
    finally:
        engine.dispose()
    psi, acc = obs.gates
    assert psi.status == "fail" and psi.treatment > 0.2 and "monitored" not in psi.reason
    assert acc.status == "pending"  # no control group reported v1 sketches


def test_sketches_of_one_batch_are_added_up_into_their_window_row(mfleet, ref):
    from edgeloop.artifacts import DeviceReport
    from edgeloop.db import DeviceRow, write_session
    from edgeloop.fleet._monitor_store import check_sketch, store_sketches

    publish(mfleet, 1, ref)
    d, e = mfleet.device(), mfleet.device()
    engine = make_engine(mfleet.settings.db_url)
    now = datetime.now(timezone.utc)
    try:
        with read_session(engine) as s:
            pending = []
            for dev, n, seed in ((d, 30, 0), (d, 20, 1), (e, 10, 2), (d, 5, 3)):
                body = DeviceReport(device_id=dev.device_id, model="clf", version=1,
                                    window_s=60.0, sketch=window(ref, n, seed))
                row = s.get(DeviceRow, dev.device_id)
                pending.append(check_sketch(s, row, body, now, window_s=3600.0))
        with write_session(engine) as s:
            assert store_sketches(s, pending[:1]) == 1  # an existing row ...
        with write_session(engine) as s:  # ... then a batch adding to it, and another device's
            assert store_sketches(s, pending[1:]) == 2
        with read_session(engine) as s:
            rows = {r.device_id: r.n for r in s.scalars(sa.select(MonitorSketchRow))}
        assert rows == {d.device_id: 55, e.device_id: 10}
    finally:
        engine.dispose()
