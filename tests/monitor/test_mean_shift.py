"""The multivariate mean-shift test (``@mean_shift``): calibrated on unshifted windows from 50
to 100,000 rows, in the report's corrected family, and seeing a 0.5-sd shift in a direction
that none of the components watched per feature carries."""

from __future__ import annotations

import numpy as np
import pytest

from edgeloop.monitor.drift import (
    DeviceSketch,
    DriftOptions,
    drift_report,
    mean_shift_test,
    report_metrics,
)
from edgeloop.monitor.sketch import MonitorReference, WindowSketch, build_reference

D = 32
REF_ROWS = 4000


class Embeddings:
    """A skewed (ReLU) 32-value embedding with unequal variances; a classifier head that reads
    only its top principal components (so a shift across the others leaves the outputs be)."""

    def __init__(self, seed: int = 11) -> None:
        rng = np.random.default_rng(seed)
        self.a = rng.normal(size=(D, D)) * np.linspace(2.0, 0.3, D)
        big = self.embed(200_000, rng)
        self.mean = big.mean(axis=0)
        self.cov = np.cov(big, rowvar=False)
        vals, vecs = np.linalg.eigh(self.cov)
        self.top = vecs[:, ::-1][:, :8]  # the population's top 8 directions
        self.head = self.top @ rng.normal(size=(8, 3)) * 0.3

    def embed(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return np.maximum(rng.normal(size=(n, D)) @ self.a.T + 0.2, 0.0)

    def window(self, n: int, rng: np.random.Generator, shift: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        e = self.embed(n, rng)
        logits = (e - self.mean) @ self.head
        return (e if shift is None else e + shift), logits


@pytest.fixture(scope="module")
def world() -> tuple[Embeddings, MonitorReference]:
    gen = Embeddings()
    rng = np.random.default_rng(12)
    e, logits = gen.window(REF_ROWS, rng)
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    y = ((p / p.sum(axis=1, keepdims=True)).cumsum(axis=1) > rng.random((REF_ROWS, 1))).argmax(1)
    ref = build_reference(np.zeros((REF_ROWS, 1)), logits, y, embeddings=e, output_kind="logits")
    assert ref.projection is not None and ref.projection.whiten is not None
    assert len(ref.projection.whiten) == D and len(ref.features) == 8
    return gen, ref


def _report(ref: MonitorReference, e: np.ndarray, logits: np.ndarray):  # type: ignore[no-untyped-def]
    s = WindowSketch(ref)
    s.update(e, logits)
    return drift_report("m", 1, [DeviceSketch("d", 1, s)])


def test_the_statistic_follows_its_null_distribution_when_the_view_is_gaussian() -> None:
    # Gaussian rows, whitened against a sampled reference: the F law is exact here
    rng = np.random.default_rng(0)
    m, d, n = 2000, 16, 50
    ps = []
    for _ in range(40):
        ref = rng.normal(size=(m, d))
        mu, cov = ref.mean(axis=0), np.cov(ref, rowvar=False)
        vals, vecs = np.linalg.eigh(cov)
        w = vecs / np.sqrt(vals)
        for _ in range(50):
            ps.append(mean_shift_test(((rng.normal(size=(n, d)) - mu) @ w).sum(axis=0), n, m)["p"])
    p = np.array(ps)
    assert 0.07 <= np.mean(p < 0.1) <= 0.13 and np.mean(p < 0.01) <= 0.02
    assert 0.4 <= np.median(p) <= 0.6


@pytest.mark.slow
@pytest.mark.parametrize(("rows", "windows"), [(50, 1500), (1000, 200)])
def test_unshifted_windows_alarm_rarely(world, rows: int, windows: int) -> None:
    gen, ref = world
    rng = np.random.default_rng(rows)
    ps, alarms, shift_alarms = [], 0, 0
    for _ in range(windows):
        r = _report(ref, *gen.window(rows, rng))
        t = r.features["@mean_shift"]
        ps.append(t["p"])
        alarms += r.alarm
        shift_alarms += bool(t["drifted"])
    p = np.array(ps)
    # the test's own p-values: near uniform (skewed rows at 50: a little heavy in the tail)
    assert 0.03 <= np.mean(p < 0.1) <= 0.15 and np.mean(p < 0.01) <= 0.025
    # the report as a whole, @mean_shift in its corrected family: the 1 % goal, with margin
    assert alarms / windows <= 0.01 and shift_alarms / windows <= 0.005


def test_huge_unshifted_windows_stay_quiet(world) -> None:
    # 100,000 rows: significance comes easily (the reference's own sampling error is in the
    # two-sample statistic) and the effect floor holds what little remains
    gen, ref = world
    rng = np.random.default_rng(5)
    for _ in range(10):
        t = _report(ref, *gen.window(100_000, rng)).features["@mean_shift"]
        assert not t["drifted"] and t["kl"] < 0.02


def _hidden_direction(gen: Embeddings, ref: MonitorReference) -> np.ndarray:
    """A unit direction orthogonal to every component watched per feature: spread evenly over
    the reference's principal directions beyond them."""
    assert ref.projection is not None and ref.projection.whiten is not None
    rest = ref.projection.whiten[8:]
    u = (rest / np.linalg.norm(rest, axis=1, keepdims=True)).sum(axis=0)
    u -= ref.projection.components.T @ (ref.projection.components @ u)
    return u / np.linalg.norm(u)  # type: ignore[no-any-return]


def test_a_half_sd_shift_no_watched_component_carries_is_detected_at_1000_rows(world) -> None:
    gen, ref = world
    u = _hidden_direction(gen, ref)
    assert ref.projection is not None
    assert np.abs(ref.projection.components @ u).max() < 1e-9
    shift = 0.5 * float(np.sqrt(u @ gen.cov @ u)) * u  # half a standard deviation along u
    rng = np.random.default_rng(8)
    detected, per_feature = 0, 0
    for _ in range(40):
        r = _report(ref, *gen.window(1000, rng, shift))
        detected += "@mean_shift" in r.drifted
        per_feature += any(not k.startswith("@") for k in r.drifted)
        assert r.features["@mean_shift"]["mahalanobis"] > 0.3
    assert detected >= 38 and per_feature == 0
    assert report_metrics(r)["mean_shift"] == r.features["@mean_shift"]["mahalanobis"]


def test_a_shift_below_the_effect_floor_does_not_alarm_however_large_the_window(world) -> None:
    gen, ref = world
    u = _hidden_direction(gen, ref)
    shift = 0.1 * float(np.sqrt(u @ gen.cov @ u)) * u  # significant at 10^6 rows, harmless
    rng = np.random.default_rng(9)
    s = WindowSketch(ref)
    for _ in range(5):
        s.update(*gen.window(200_000, rng, shift))
    t = drift_report("m", 1, [DeviceSketch("d", 1, s)]).features["@mean_shift"]
    assert t["p"] < 1e-6 and t["kl"] < 0.1 and not t["drifted"]


def test_a_device_with_a_broken_feature_is_left_out_of_the_mean(world) -> None:
    gen, ref = world
    rng = np.random.default_rng(10)
    items = []
    for i in range(4):
        e, logits = gen.window(500, rng)
        if i == 0:
            e = e + 1e4  # far out of range on every watched component: a broken device
        s = WindowSketch(ref)
        s.update(e, logits)
        items.append(DeviceSketch(f"d{i}", 1, s))
    r = drift_report("m", 1, items)
    t = r.features["@mean_shift"]
    assert t["excluded_devices"] == 1 and not t["drifted"] and r.quality


def test_no_whitening_no_test(reference: MonitorReference) -> None:
    from .conftest import classifier_data

    x, logits, _ = classifier_data(500, np.random.default_rng(1))
    s = WindowSketch(reference)
    s.update(x, logits)
    assert "@mean_shift" not in drift_report("m", 1, [DeviceSketch("d", 1, s)]).features
    assert mean_shift_test(np.zeros(0), 10, 100)["p"] == 1.0
    assert mean_shift_test(np.ones(4), 0, 100)["p"] == 1.0


def test_the_direct_tests_are_scipys() -> None:
    # compare_counts computes the chi-square of homogeneity and the Kolmogorov tail directly
    # (scipy's generic wrappers took over half a report's time): the same values
    from scipy import stats

    from edgeloop.monitor.drift import compare_counts

    rng = np.random.default_rng(3)
    for _ in range(300):
        k = int(rng.integers(2, 12))
        ref = rng.integers(1, 2000, k).astype(float)
        win = rng.poisson(ref * rng.uniform(0.01, 5) * rng.uniform(0.5, 1.5, k)).astype(float)
        win[0] += 1
        t = compare_counts(ref, win, options=DriftOptions(min_expected=0.0))
        res = stats.chi2_contingency(np.vstack([ref, win])[:, ref + win > 0], correction=False)
        assert t.chi2 == pytest.approx(res.statistic, rel=1e-12)
        assert t.p == pytest.approx(res.pvalue, rel=1e-9, abs=1e-300)
        n_eff = ref.sum() * win.sum() / (ref.sum() + win.sum())
        assert t.ks is not None and t.ks_p == pytest.approx(
            stats.kstwobign.sf(np.sqrt(n_eff) * t.ks), rel=1e-12)
    f = mean_shift_test(np.full(16, 5.0), 100, 2000)
    assert f["p"] == pytest.approx(
        stats.f.sf(f["t2"] * (2000 - 16) / (16 * 1999), 16, 2000 - 16), rel=1e-12)
