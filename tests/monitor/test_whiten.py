"""The whitened view on the device (numpy only): the reference's whitening, the window's
summed whitened coordinates, their merge, their wire form and its bounds."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgeloop.errors import MonitorReferenceError, SketchError
from edgeloop.monitor.sketch import MonitorReference, WindowSketch, build_reference

D = 24


def embedding_data(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    a = rng.normal(size=(D, D)) * np.linspace(2.0, 0.2, D)
    e = np.maximum(rng.normal(size=(n, D)) @ a.T + 0.3, 0.0)
    return e, e[:, :3] * 0.1


@pytest.fixture(scope="module")
def wref() -> MonitorReference:
    e, logits = embedding_data(3000, np.random.default_rng(5))
    return build_reference(np.zeros((3000, 1)), logits, embeddings=e, output_kind="logits")


def test_the_whitening_has_unit_covariance_on_the_reference() -> None:
    e, logits = embedding_data(3000, np.random.default_rng(5))
    ref = build_reference(np.zeros((3000, 1)), logits, embeddings=e, output_kind="logits")
    proj = ref.projection
    assert proj is not None and proj.whiten is not None and proj.whiten.shape == (D, D)
    w = proj.whitened(e)
    assert np.allclose(w.mean(axis=0), 0, atol=1e-6)
    assert np.allclose(np.cov(w, rowvar=False), np.eye(D), atol=1e-6)


def test_negligible_directions_and_limits_are_left_out() -> None:
    rng = np.random.default_rng(1)
    e = rng.normal(size=(400, 10))
    e[:, 5:] = e[:, :5] @ rng.normal(size=(5, 5))  # rank 5: five directions of no variance
    logits = rng.normal(size=(400, 3))
    ref = build_reference(np.zeros((400, 1)), logits, embeddings=e)
    assert ref.projection is not None and ref.projection.whiten is not None
    assert len(ref.projection.whiten) == 5
    few = build_reference(np.zeros((400, 1)), logits, embeddings=e, whiten=3)
    assert few.projection is not None and few.projection.whiten is not None
    assert len(few.projection.whiten) == 3
    none = build_reference(np.zeros((400, 1)), logits, embeddings=e, whiten=0)
    assert none.projection is not None and none.projection.whiten is None
    assert "whiten" not in none.to_dict()["projection"]  # older references keep their digest
    # a covariance from fewer than 20 rows per value of the view is not trusted: no whitening
    wide = build_reference(np.zeros((199, 1)), logits[:199], embeddings=e[:199])
    assert wide.projection is not None and wide.projection.whiten is None
    ok = build_reference(np.zeros((200, 1)), logits[:200], embeddings=e[:200], whiten=3)
    assert ok.projection is not None and ok.projection.whiten is not None
    small = build_reference(np.zeros((40, 1)), logits[:40], embeddings=rng.normal(size=(40, 2)))
    assert small.projection is not None and small.projection.whiten is not None
    assert len(small.projection.whiten) == 2
    with pytest.raises(MonitorReferenceError, match="whiten"):
        build_reference(np.zeros((400, 1)), logits, embeddings=e, whiten=500)


def test_a_per_feature_reference_has_no_whitened_fields(reference: MonitorReference) -> None:
    s = WindowSketch(reference)
    x = np.random.default_rng(0).normal(size=(10, 6))
    s.update(x, x[:, :3])
    assert "white_sum" not in s.to_dict() and len(s.white_sum) == 0


def test_the_sketch_sums_whitened_rows_and_merges_by_addition(wref: MonitorReference) -> None:
    e, logits = embedding_data(500, np.random.default_rng(9))
    e[3, 0] = np.nan  # a bad row is left out of the sum
    a, b = WindowSketch(wref), WindowSketch(wref)
    a.update(e[:200], logits[:200])
    b.update(e[200:], logits[200:])
    assert wref.projection is not None
    ok = np.isfinite(e).all(axis=1)
    expected = wref.projection.whitened(e[ok]).sum(axis=0)
    m = a + b
    assert m.white_n == 499 and np.allclose(m.white_sum, expected)
    back = WindowSketch.from_json(m.to_json(), wref)
    assert back.white_n == 499 and np.allclose(back.white_sum, expected, rtol=1e-9)


def test_the_report_stays_a_few_kilobytes(wref: MonitorReference) -> None:
    e, logits = embedding_data(100_000, np.random.default_rng(2))
    s = WindowSketch(wref)
    s.update(e, logits)
    d = json.loads(s.to_json())
    assert len(d["white_sum"]) == D
    assert s.size_bytes() < 2500  # 8 watched components, 10 bins, 3 classes, 24 directions


def test_a_broken_sensors_huge_values_keep_the_sketch_sendable(wref: MonitorReference) -> None:
    e, logits = embedding_data(50, np.random.default_rng(3))
    e[0] = 1e30
    s = WindowSketch(wref)
    s.update(e, logits)
    assert np.isfinite(s.white_sum).all() and np.abs(s.white_sum).max() <= 51e6
    WindowSketch.from_json(s.to_json(), wref)  # the server takes it


@pytest.mark.parametrize(
    "mutate, why",
    [
        (lambda d: d.pop("white_sum"), "white_sum"),
        (lambda d: d.pop("white_n"), "white_n"),
        (lambda d: d["white_sum"].pop(), "white_sum"),
        (lambda d: d["white_sum"].append(0.0), "white_sum"),
        (lambda d: d["white_sum"].__setitem__(0, 1e300), "white_sum"),
        (lambda d: d["white_sum"].__setitem__(0, "1"), "white_sum"),
        (lambda d: d["white_sum"].__setitem__(0, True), "white_sum"),
        (lambda d: d.update(white_sum={"a": 1}), "white_sum"),
        (lambda d: d.update(white_n=d["n"] + 1), "white_n"),
        (lambda d: d.update(white_n=-1), "white_n"),
        (lambda d: d.update(white_n=1.5), "white_n"),
        (lambda d: d.update(white_n=0), "white_sum"),  # sums of no rows must be 0
    ],
)
def test_hostile_whitened_fields_are_refused(wref: MonitorReference, mutate, why) -> None:
    e, logits = embedding_data(60, np.random.default_rng(4))
    s = WindowSketch(wref)
    s.update(e, logits)
    d = json.loads(s.to_json())
    mutate(d)
    with pytest.raises(SketchError, match=why):
        WindowSketch.from_dict(d, wref)


@pytest.mark.parametrize(
    "mutate, why",
    [
        (lambda p: p["whiten"].pop(), None),  # another digest is another reference: still valid
        (lambda p: p["whiten"][0].pop(), "whiten\\[0\\]"),
        (lambda p: p["whiten"][0].__setitem__(0, 1e300), "whiten\\[0\\]"),
        (lambda p: p.update(whiten=[]), "whiten"),
        (lambda p: p.update(whiten=[[0.0] * D] * 129), "whiten"),
        (lambda p: p.update(whiten="x"), "whiten"),
    ],
)
def test_hostile_whitening_is_refused(wref: MonitorReference, mutate, why) -> None:
    d = wref.to_dict()
    mutate(d["projection"])
    if why is None:
        MonitorReference.from_dict(d)
        return
    with pytest.raises(MonitorReferenceError, match=why):
        MonitorReference.from_dict(d)


def test_a_whitening_wider_than_the_reference_supports_is_refused(wref) -> None:
    d = wref.to_dict()
    d["n"] = 20
    for k in ("class_counts",):
        d[k] = [20, 0, 0]
    for f in d["features"]:
        f["counts"] = [20] + [0] * (len(f["counts"]) - 1)
    with pytest.raises(MonitorReferenceError, match="more than"):
        MonitorReference.from_dict(d)
