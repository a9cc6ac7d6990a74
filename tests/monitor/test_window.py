import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgeloop.errors import SketchError
from edgeloop.monitor.sketch import MAX_BINS, MonitorReference, WindowSketch, build_reference

from .conftest import FEATURES, classifier_data

SETTINGS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _sketch(reference: MonitorReference, n: int, seed: int, shift: float = 0.0) -> WindowSketch:
    x, logits, _ = classifier_data(n, np.random.default_rng(seed), shift)
    s = WindowSketch(reference)
    s.update(x, logits)
    return s


def test_histograms_and_moments_match_numpy(reference: MonitorReference) -> None:
    x, logits, _ = classifier_data(3000, np.random.default_rng(5))
    s = WindowSketch(reference)
    for chunk in np.array_split(np.arange(3000), 7):  # batches of any size, in order
        s.update(x[chunk], logits[chunk])
    for i, ft in enumerate(reference.features):
        want = np.bincount(
            np.searchsorted(ft.edges, x[:, i], side="right"), minlength=len(ft.edges) + 1
        )
        assert s.hist[i, : len(want)].tolist() == want.tolist()
        mean = ft.mean + ft.std * s.sum_z[i] / 3000
        assert mean == pytest.approx(x[:, i].mean(), abs=1e-9)
        assert (s.vmin[i], s.vmax[i]) == (x[:, i].min(), x[:, i].max())
    assert s.pred.tolist() == np.bincount(logits.argmax(1), minlength=3).tolist()
    assert s.n == s.n_outputs == 3000


def test_update_returns_calibrated_probabilities(reference: MonitorReference) -> None:
    x, logits, y = classifier_data(20000, np.random.default_rng(6))
    s = WindowSketch(reference)
    p = s.update(x, logits)
    assert p is not None and p.shape == (20000,)
    assert s.exp_correct == pytest.approx(p.sum())
    assert s.exp_correct / s.n_outputs == pytest.approx((logits.argmax(1) == y).mean(), abs=0.02)


def test_data_quality_counters(reference: MonitorReference) -> None:
    x, logits, _ = classifier_data(100, np.random.default_rng(7))
    x[:10, 1] = np.nan
    x[10:12, 1] = np.inf
    x[:, 2] = 0.25  # stuck sensor
    x[20:25, 3] = 1e6  # out of range
    logits[0] = np.nan
    s = WindowSketch(reference)
    for row in range(100):
        s.update(x[row : row + 1], logits[row : row + 1])  # one inference at a time
    c = s.counts
    assert (c["nan"][1], c["inf"][1], c["finite"][1]) == (10, 2, 88)
    assert c["repeats"][2] == 99 and s.vmin[2] == s.vmax[2] == 0.25
    assert (c["above"][3], c["below"][3]) == (5, 0)
    assert s.bad_rows == 12 and (s.n_outputs, s.bad_outputs) == (99, 1)
    assert np.isfinite(s.sum_z).all()


def test_wrong_widths_are_refused(reference: MonitorReference) -> None:
    s = WindowSketch(reference)
    with pytest.raises(SketchError, match=f"expected {FEATURES} values"):
        s.update(np.zeros((2, FEATURES + 1)))
    with pytest.raises(SketchError, match="expected 3 outputs"):
        s.update(np.zeros((2, FEATURES)), np.zeros((2, 4)))


def test_projection_view_sketches_images() -> None:
    rng = np.random.default_rng(0)
    ref = build_reference(rng.normal(size=(500, 3, 8, 8)), rng.normal(size=(500, 5)), components=6)
    s = WindowSketch(ref)
    batch = rng.normal(size=(4, 3, 8, 8))
    batch[1, 0, 0, 0] = np.nan
    s.update(batch, rng.normal(size=(4, 5)))
    assert s.bad_rows == 1
    assert s.counts["finite"].tolist() == [3] * 6 and s.counts["nan"].tolist() == [1] * 6


def test_merge_equals_sketching_the_concatenation(reference: MonitorReference) -> None:
    x, logits, _ = classifier_data(1000, np.random.default_rng(8))
    whole, a, b = WindowSketch(reference), WindowSketch(reference), WindowSketch(reference)
    whole.update(x, logits)
    a.update(x[:300], logits[:300])
    b.update(x[300:], logits[300:])
    m = a + b
    assert m.hist.tolist() == whole.hist.tolist()
    assert {k: v.tolist() for k, v in m.counts.items() if k != "repeats"} == {
        k: v.tolist() for k, v in whole.counts.items() if k != "repeats"
    }
    assert np.allclose(m.sum_z2, whole.sum_z2) and m.exp_correct == pytest.approx(whole.exp_correct)


def _same(a: WindowSketch, b: WindowSketch) -> None:
    da, db = a.to_dict(), b.to_dict()
    for k in da:
        if isinstance(da[k], float) or (
            isinstance(da[k], list) and da[k] and isinstance(da[k][0], float)
        ):
            assert np.allclose(da[k], db[k], rtol=1e-9, atol=1e-9), k
        else:
            assert da[k] == db[k], k


@SETTINGS
@given(
    st.lists(
        st.tuples(st.integers(0, 200), st.integers(0, 2**16), st.floats(-2, 2)),
        min_size=3,
        max_size=3,
    )
)
def test_merge_is_associative_and_commutative(reference: MonitorReference, parts) -> None:
    a, b, c = (_sketch(reference, n, seed, shift) for n, seed, shift in parts)
    _same((a + b) + c, a + (b + c))
    _same(a + b, b + a)


@SETTINGS
@given(st.integers(1, 30), st.integers(2, MAX_BINS), st.integers(2, 50), st.integers(1, 5000))
def test_serialised_size_is_bounded_by_the_shape_not_the_rows(features, bins, classes, n) -> None:
    rng = np.random.default_rng(features * 1000 + bins)
    ref = build_reference(
        rng.normal(size=(200, features)),
        rng.random((200, classes)),
        rng.integers(0, classes, 200),
        bins=bins,
        max_features=64,
    )
    s = WindowSketch(ref)
    s.update(rng.normal(size=(n, features)) * 1e3, rng.random((n, classes)))
    cells = sum(len(f.edges) + 1 for f in ref.features)
    # counts of <= 5 digits and a comma per cell, ~140 bytes per feature for counters,
    # moments and min/max, ~10 per class, ~800 for keys, the reference digest and the
    # confidence histogram; counts grow only with log10 of the rows
    bound = 800 + 8 * cells + 140 * features + 10 * classes
    assert s.size_bytes() <= bound
    assert WindowSketch.from_json(s.to_json(), ref).to_json() == s.to_json()


def test_a_typical_report_is_a_few_kilobytes(reference: MonitorReference) -> None:
    s = _sketch(reference, 100_000, 9)
    assert 500 < s.size_bytes() < 2_500  # 6 features x 10 bins, 3 classes
    assert len(json.loads(s.to_json())["hist"]) == FEATURES
