"""Sketches come from the network: anything malformed is a SketchError, never another error."""

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgeloop.errors import SketchError
from edgeloop.monitor.drift import validate_sketch
from edgeloop.monitor.sketch import MonitorReference, WindowSketch, build_reference

from .conftest import classifier_data


@pytest.fixture(scope="module")
def wire(reference: MonitorReference) -> bytes:
    x, logits, y = classifier_data(400, np.random.default_rng(3))
    x[:3, 1] = np.nan
    s = WindowSketch(reference)
    p = s.update(x, logits)
    assert p is not None
    s.add_feedback(int(logits[0].argmax()), int(y[0]), float(p[0]))
    s.start, s.end = 1_700_000_000.0, 1_700_000_060.0
    return s.to_json()


def test_a_good_sketch_round_trips(reference: MonitorReference, wire: bytes) -> None:
    s = validate_sketch(wire, reference)
    assert s.to_json() == wire and s.n == 400 and s.fb_n == 1


def _mutated(wire: bytes, mutate) -> bytes:
    d = json.loads(wire)
    mutate(d)
    return json.dumps(d).encode()


@pytest.mark.parametrize(
    "mutate, why",
    [
        (lambda d: d["hist"][0].__setitem__(0, -1), "hist"),
        (lambda d: d["hist"][0].__setitem__(0, d["hist"][0][0] + 1), "sum to 'finite'"),
        (lambda d: d["hist"].pop(), "histograms"),
        (lambda d: d["hist"][2].append(0), "hist"),
        (lambda d: d.update(n=d["n"] + 1), "finite \\+ nan"),
        (lambda d: d["nan"].__setitem__(1, 2), "finite \\+ nan"),
        (lambda d: d["sum_z"].__setitem__(0, 1e300), "sum_z"),
        (lambda d: d["sum_z2"].__setitem__(0, -1.0), "sum_z2"),
        (lambda d: d["sum_z"].__setitem__(0, 1e6), "inconsistent"),
        (lambda d: d["pred"].__setitem__(0, d["pred"][0] + 1), "pred"),
        (lambda d: d["pred"].append(0), "pred"),
        (lambda d: d.update(exp_correct=d["n_outputs"] + 1.0), "exp_correct"),
        (lambda d: d.update(fb_correct=5), "fb_correct"),
        (lambda d: d.update(reference_sha256="0" * 64), "reference"),
        (lambda d: d.update(schema_version=9), "schema_version"),
        (lambda d: d.update(n=True), "sketch.n"),
        (lambda d: d.update(n="400"), "sketch.n"),
        (lambda d: d.update(vmin=[0.0] * 6, vmax=[-1.0] * 6), "vmin"),
        (lambda d: d.update(start=5.0, end=1.0), "start after end"),
        (lambda d: d.pop("conf_hist"), "conf_hist"),
    ],
)
def test_hostile_sketches_are_refused(reference, wire, mutate, why) -> None:
    with pytest.raises(SketchError, match=why):
        validate_sketch(_mutated(wire, mutate), reference)


@pytest.mark.parametrize(
    "data",
    [b"", b"[]", b"{", b'{"n": NaN}', b'{"n": Infinity}', b"[" * 100_000, b" " * (300 << 10)],
)
def test_non_sketches_are_refused(reference, data: bytes) -> None:
    with pytest.raises(SketchError):
        validate_sketch(data, reference)


def test_a_sketch_for_another_reference_is_refused(wire: bytes) -> None:
    rng = np.random.default_rng(0)
    other = build_reference(rng.normal(size=(100, 6)), rng.random((100, 3)))
    with pytest.raises(SketchError, match="made against reference"):
        validate_sketch(wire, other)


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4)
    ),
    max_leaves=10,
)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.data())
def test_any_field_replaced_by_any_json_is_refused_cleanly(reference, wire, data) -> None:
    d = json.loads(wire)
    key = data.draw(st.sampled_from(sorted(d)))
    if isinstance(d[key], list) and d[key] and data.draw(st.booleans()):
        i = data.draw(st.integers(0, len(d[key]) - 1))
        d[key][i] = data.draw(JSON)
    else:
        d[key] = data.draw(JSON)
    try:
        s = validate_sketch(json.dumps(d).encode(), reference)
    except SketchError:
        return
    # accepted: then it must be internally consistent and re-serialise to valid JSON
    assert s.n >= 0 and np.isfinite(s.sum_z).all()
    json.loads(s.to_json())
