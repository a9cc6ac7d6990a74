import numpy as np
import pytest

from edgeloop.monitor.drift import (
    AlertPolicy,
    AlertState,
    DeviceSketch,
    estimated_accuracy,
    merge_sketches,
    realized_accuracy,
    segment_bias,
    step_alert,
    wilson,
)
from edgeloop.monitor.sketch import MonitorReference, WindowSketch

from .conftest import classifier_data


def _window(reference, n, seed, shift=0.0, labelled=1.0):
    rng = np.random.default_rng(seed)
    x, logits, y = classifier_data(n, rng, shift)
    s = WindowSketch(reference)
    p = s.update(x, logits)
    assert p is not None
    for i in np.flatnonzero(rng.random(n) < labelled):
        s.add_feedback(int(logits[i].argmax()), int(y[i]), float(p[i]))
    return s, float((logits.argmax(1) == y).mean())


@pytest.mark.parametrize("shift", [0.0, 1.0, 2.0])
def test_cbpe_follows_realized_accuracy_under_covariate_shift(reference, shift) -> None:
    errors, covered = [], 0
    for seed in range(20):
        s, truth = _window(reference, 3000, seed, shift)
        m = merge_sketches([DeviceSketch("d", 1, s)])
        est = estimated_accuracy(m)
        assert est is not None
        errors.append(abs(est.value - truth))
        covered += est.low <= truth <= est.high
    assert np.mean(errors) < 0.02
    assert covered >= 16  # a 95 % interval: >= 80 % of 20 windows


def test_realized_accuracy_from_a_share_of_labels(reference) -> None:
    s, truth = _window(reference, 5000, 1, labelled=0.1)
    real = realized_accuracy(merge_sketches([DeviceSketch("d", 1, s)]))
    assert real is not None and 400 < real.n < 600
    assert real.low <= truth <= real.high


def test_wilson_interval() -> None:
    w = wilson(0, 10)
    assert w is not None and w.value == 0 and w.low == 0 and 0.25 < w.high < 0.35
    assert wilson(5, 0) is None


def test_segment_gap_with_interval(reference: MonitorReference) -> None:
    items = []
    for d in range(8):
        region = "north" if d < 4 else "south"
        s, _ = _window(reference, 2000, d, shift=0.0 if region == "north" else 2.0)
        items.append(DeviceSketch(f"d{d}", 1, s, labels={"region": region}))
    items.append(DeviceSketch("unlabelled", 1, _window(reference, 100, 50)[0]))
    table, gaps = segment_bias(items, "region", positive=0)
    assert set(table) == {"north", "south"}
    by = {g.metric: g for g in gaps}
    assert {"est_accuracy", "realized_accuracy", "positive_rate"} == set(by)
    g = by["realized_accuracy"]
    assert g.gap > 0 and g.low > 0 and g.low < g.gap < g.high  # the gap is real
    assert by["est_accuracy"].gap == pytest.approx(g.gap, abs=0.03)


def test_alert_hysteresis() -> None:
    policy = AlertPolicy(raise_after=2, clear_after=3)
    state, events = AlertState(), []
    for bad in [True, False, True, None, True, False, False, True, False, False, False]:
        state, ev = step_alert(state, bad, policy, at=1.0)
        events.append(ev)
    assert events == [None, None, None, None, "raised", None, None, None, None, None, "cleared"]
    assert not state.active
