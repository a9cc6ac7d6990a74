"""Drift tests against the reference: false alarms on unshifted windows at small and large
sizes, detection of a clear shift, capped device weights, data quality, the report."""

import numpy as np
import pytest
from scipy import stats

from edgeloop.artifacts import DriftReport
from edgeloop.monitor.drift import (
    DeviceSketch,
    DriftOptions,
    benjamini_hochberg,
    compare_counts,
    drift_report,
    merge_sketches,
    report_metrics,
)
from edgeloop.monitor.sketch import MonitorReference, WindowSketch

from .conftest import classifier_data


def _true_bin_probs(reference: MonitorReference, i: int, shift: float = 0.0) -> np.ndarray:
    cdf = stats.norm.cdf(reference.features[i].edges - shift)
    return np.diff(np.concatenate([[0.0], cdf, [1.0]]))


def _false_alarms(reference: MonitorReference, n: int, windows: int, seed: int) -> int:
    """Windows drawn from the reference's own distribution (the exact bin probabilities of
    N(0, 1) at the reference's edges): any alarm is a false one."""
    rng = np.random.default_rng(seed)
    opts = DriftOptions()
    alarms = 0
    probs = [_true_bin_probs(reference, i) for i in range(len(reference.features))]
    for _ in range(windows):
        tests = [
            compare_counts(ft.counts, rng.multinomial(n, probs[i]), options=opts)
            for i, ft in enumerate(reference.features)
        ]
        adj = benjamini_hochberg([t.p for t in tests])
        alarms += any(
            p <= opts.alpha and t.psi >= opts.psi_floor for p, t in zip(adj, tests, strict=True)
        )
    return alarms


@pytest.mark.parametrize("n", [50, 100_000])
def test_few_false_alarms_on_unshifted_windows(reference: MonitorReference, n: int) -> None:
    alarms = _false_alarms(reference, n, 400, seed=n)
    assert alarms <= 8  # <= 2 % of 400 windows (the goal is 1 %; alpha is 0.01)


def test_large_windows_are_significant_but_below_the_effect_floor(
    reference: MonitorReference,
) -> None:
    # a shift of 0.02 sd: significant at 10^6 rows, harmless, so no alarm
    rng = np.random.default_rng(0)
    ft = reference.features[0]
    t = compare_counts(ft.counts, rng.multinomial(10**6, _true_bin_probs(reference, 0, 0.02)))
    assert t.psi < 0.01


def test_a_clear_covariate_shift_is_detected(reference: MonitorReference) -> None:
    detected = 0
    for seed in range(40):
        x, logits, _ = classifier_data(1000, np.random.default_rng(seed), shift=0.5)
        s = WindowSketch(reference)
        s.update(x, logits)
        r = drift_report("m", 1, [DeviceSketch("d", 1, s)])
        detected += "x0" in r.drifted
        assert set(r.drifted) <= {"x0", "@prediction", "@confidence"}
    assert detected >= 38


def test_small_windows_do_not_test(reference: MonitorReference) -> None:
    x, logits, _ = classifier_data(10, np.random.default_rng(0), shift=3.0)
    s = WindowSketch(reference)
    s.update(x, logits)
    r = drift_report("m", 1, [DeviceSketch("d", 1, s)])
    assert r.features == {} and r.drifted == () and not r.alarm


def test_one_busy_device_cannot_outvote_its_cohort(reference: MonitorReference) -> None:
    items = []
    for d in range(10):
        s = WindowSketch(reference)
        s.update(*classifier_data(500, np.random.default_rng(d))[:2])
        items.append(DeviceSketch(f"d{d}", 1, s))
    loud = WindowSketch(reference)
    loud.update(*classifier_data(50_000, np.random.default_rng(99), shift=2.0)[:2])
    items.append(DeviceSketch("loud", 1, loud))
    merged = merge_sketches(items, cap=3.0)
    assert merged.weights["loud"] == pytest.approx(3 * 500 / 50_000)
    assert merged.n == pytest.approx(10 * 500 + 1500)
    uncapped = merge_sketches(items, cap=1e9)
    t_cap = compare_counts(reference.features[0].counts, merged.feature_hist(0))
    t_all = compare_counts(reference.features[0].counts, uncapped.feature_hist(0))
    assert t_all.psi > 1.0 and t_cap.psi < t_all.psi / 4


def test_a_broken_sensor_is_quality_not_drift(reference: MonitorReference) -> None:
    items = []
    for d in range(6):
        x, logits, _ = classifier_data(2000, np.random.default_rng(d))
        if d == 0:
            x[:, 1] = 7.5  # stuck, and far out of the reference's bins
        s = WindowSketch(reference)
        s.update(x, logits)
        items.append(DeviceSketch(f"d{d}", 1, s))
    r = drift_report("m", 1, items)
    assert r.quality["x1"]["stuck"] == 1.0 and r.quality["x1"]["devices"] == 1.0
    assert r.features["x1"]["excluded_devices"] == 1.0
    assert "x1" not in r.drifted
    assert report_metrics(r)["stuck_features"] == 1.0


def test_nan_sensor_is_flagged(reference: MonitorReference) -> None:
    x, logits, _ = classifier_data(500, np.random.default_rng(0))
    x[::5, 3] = np.nan
    s = WindowSketch(reference)
    s.update(x, logits)
    r = drift_report("m", 1, [DeviceSketch("d", 1, s)])
    assert r.quality["x3"]["nan_rate"] == pytest.approx(0.2)


def test_report_round_trips_and_old_reports_still_load(reference: MonitorReference) -> None:
    x, logits, y = classifier_data(3000, np.random.default_rng(0), shift=1.0)
    s = WindowSketch(reference)
    s.update(x, logits)
    r = drift_report(
        "m", 3, [DeviceSketch("d", 3, s)], cohort={"region": "eu"}, window={"start": 0, "end": 60}
    )
    again = DriftReport.from_json(r.to_json())
    assert again == r and again.alarm and "x0" in again.drifted
    assert again.reference_sha256 == reference.digest()
    old = DriftReport.from_dict(
        {
            "kind": "drift_report",
            "schema_version": 1,
            "model": "m",
            "version": 1,
            "features": {},
            "drifted": [],
            "window": {},
            "future_field": 1,
        }
    )
    assert old.n == 0.0 and old.accuracy == {} and old.extra == {"future_field": 1}
    m = report_metrics(r)
    assert m["drift_psi_max"] == max(v["psi"] for k, v in r.features.items() if k[0] != "@")
    assert m["drifted_features"] == len(r.drifted)


def test_benjamini_hochberg_matches_the_textbook() -> None:
    p = [0.01, 0.04, 0.03, 0.005]
    # sorted 0.005, 0.01, 0.03, 0.04 -> *4/rank: 0.02, 0.02, 0.04, 0.04
    assert benjamini_hochberg(p) == pytest.approx([0.02, 0.04, 0.04, 0.02])


def test_empty_windows_give_an_empty_report(reference: MonitorReference) -> None:
    empty = WindowSketch(reference)
    r = drift_report("m", 1, [DeviceSketch("a", 1, empty), DeviceSketch("b", 1, empty)])
    assert (r.n, r.devices, r.features, r.accuracy, r.alarm) == (0.0, 2, {}, {}, False)
    assert report_metrics(r)["drifted_features"] == 0.0


def test_group_by_cohort_version_and_window(reference: MonitorReference) -> None:
    from edgeloop.monitor.drift import group_sketches

    items = []
    for d in range(6):
        for window in (0, 1):
            s = WindowSketch(reference)
            s.update(*classifier_data(100 + d, np.random.default_rng(d * 10 + window))[:2])
            items.append(
                DeviceSketch(
                    f"d{d}", 1 + d % 2, s, labels={"region": "eu" if d < 3 else "us"}, window=window
                )
            )
    groups = group_sketches(items, lambda it: (it.version, it.labels["region"], it.window))
    assert len(groups) == 2 * 2 * 2
    eu_v1_w0 = groups[(1, "eu", 0)]  # devices d0 and d2 in window 0
    assert (eu_v1_w0.devices, eu_v1_w0.n_raw) == (2, 100 + 102)
    assert sum(g.n_raw for g in groups.values()) == sum(it.sketch.n for it in items)
