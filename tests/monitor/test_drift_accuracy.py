"""Realized accuracy from delayed labels in the drift report: an exact two-sample test,
corrected in one family with the distribution tests (the report's alarm ORs them all)."""

import numpy as np
import pytest

from edgeloop.monitor.drift import DeviceSketch, accuracy_drop_test, drift_report
from edgeloop.monitor.drift._accuracy import wilson
from edgeloop.monitor.sketch import MonitorReference, WindowSketch

from .conftest import classifier_data


@pytest.mark.parametrize("labels", [5, 10, 100, 10_000])
def test_exact_accuracy_test_keeps_false_alarms_under_alpha(labels: int) -> None:
    # the reference's accuracy is itself a sample (5,000 rows) of the true 0.988, as is the
    # window's: any alarm is a false one, at a handful of labels as at ten thousand
    rng = np.random.default_rng(labels)
    trials, p_true, alpha = 2000, 0.988, 0.01
    ref_c = rng.binomial(5000, p_true, trials)
    win_c = rng.binomial(labels, p_true, trials)
    alarms = sum(
        accuracy_drop_test(rc, 5000, wc, labels)[1] <= alpha
        for rc, wc in zip(ref_c, win_c, strict=True)
    )
    assert alarms / trials <= 0.015  # alpha 1 %, plus the binomial noise of 2,000 trials


def test_the_former_wilson_bound_alarmed_on_a_handful_of_labels() -> None:
    # the diagnosis behind the exact test: one wrong label of five put Wilson's 99 % upper
    # bound under a 98.8 % reference, i.e. ~6 % of perfectly healthy 50-row windows alarmed
    assert wilson(4, 5, z=2.576).high < 0.988  # type: ignore[union-attr]
    assert accuracy_drop_test(0.988 * 5000, 5000, 4, 5)[1] > 0.05


def test_a_clear_accuracy_drop_is_detected_and_a_tiny_one_is_not() -> None:
    drop, p = accuracy_drop_test(4900, 5000, 170, 200)
    assert drop == pytest.approx(0.98 - 0.85) and p < 1e-6
    # 0.5 point: not significant against a 5,000-row reference (its own sampling error)...
    assert accuracy_drop_test(4900, 5000, 97_500, 100_000)[1] > 0.01
    drop, p = accuracy_drop_test(49_000, 50_000, 97_500, 100_000)  # ...significant against
    assert p < 0.01 and drop < 0.01  # 50,000, but under the effect floor
    assert accuracy_drop_test(4900, 5000, 0, 0) == (0.0, 1.0)
    assert accuracy_drop_test(4900, 5000, 200, 200)[1] == 1.0  # better is never an alarm


def _labelled_window(
    reference: MonitorReference, n: int, seed: int, wrong: float
) -> WindowSketch:
    rng = np.random.default_rng(seed)
    x, logits, y = classifier_data(n, rng)
    s = WindowSketch(reference)
    p = s.update(x, logits)
    assert p is not None
    pred = logits.argmax(1)
    for i in range(n):
        label = int(y[i]) if rng.random() >= wrong else int((pred[i] + 1) % 3)
        s.add_feedback(int(pred[i]), label, float(p[i]))
    return s


def test_report_tests_realized_accuracy_in_the_corrected_family(
    reference: MonitorReference,
) -> None:
    assert reference.accuracy is not None
    ok = drift_report("m", 1, [DeviceSketch("d", 1, _labelled_window(reference, 400, 1, 0.0))])
    t = ok.features["@accuracy"]
    assert t["n"] == 400 and "p_adj" in t and not t["drifted"] and not ok.alarm
    # inputs unchanged, a third of the labels now disagree with the model: only @accuracy
    bad = drift_report("m", 1, [DeviceSketch("d", 1, _labelled_window(reference, 400, 1, 0.35))])
    assert bad.drifted == ("@accuracy",) and bad.alarm
    assert bad.features["@accuracy"]["drop"] > 0.2


def test_no_labels_no_accuracy_item(reference: MonitorReference) -> None:
    rng = np.random.default_rng(3)
    x, logits, _ = classifier_data(200, rng)
    s = WindowSketch(reference)
    s.update(x, logits)
    assert "@accuracy" not in drift_report("m", 1, [DeviceSketch("d", 1, s)]).features


@pytest.mark.slow
def test_small_windows_keep_the_family_under_one_percent() -> None:
    # reference and window both samples of one distribution (two-sample, as in the field);
    # eight features of ten decile bins, BH over them at alpha 1 %: the chi-square's far tail
    # at 50 rows is where 5 expected counts per bin alarmed too often
    from edgeloop.monitor.drift import DriftOptions, benjamini_hochberg, compare_counts

    rng = np.random.default_rng(50)
    probs = np.full(10, 0.1)
    opts = DriftOptions()
    windows, alarms = 2000, 0
    for _ in range(windows):
        tests = [
            compare_counts(rng.multinomial(5000, probs), rng.multinomial(50, probs), options=opts)
            for _ in range(8)
        ]
        adj = benjamini_hochberg([t.p for t in tests])
        alarms += any(
            p <= opts.alpha and t.psi >= opts.psi_floor
            for p, t in zip(adj, tests, strict=True)
        )
    assert alarms / windows <= 0.01
