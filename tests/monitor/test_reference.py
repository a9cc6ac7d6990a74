import json

import numpy as np
import pytest

from edgeloop.errors import MonitorReferenceError
from edgeloop.monitor.sketch import MonitorReference, build_reference

from .conftest import classifier_data


def test_bins_hold_equal_reference_mass(reference: MonitorReference) -> None:
    for ft in reference.features:
        assert len(ft.edges) == 9
        assert ft.counts.sum() == 5000
        assert np.all(np.abs(ft.counts - 500) <= 1)
        assert ft.low < -3 and ft.high > 3 and 0.9 < ft.std < 1.1


def test_calibration_is_monotone_and_matches_the_calibrated_model(
    reference: MonitorReference,
) -> None:
    cal = reference.calibration
    assert cal is not None
    assert np.all(np.diff(cal.accuracy) >= 0)
    # labels were drawn from the model's softmax: calibrated accuracy tracks confidence
    x, logits, _ = classifier_data(5000, np.random.default_rng(1234))
    conf = np.exp(logits - logits.max(1, keepdims=True))
    conf = (conf / conf.sum(1, keepdims=True)).max(1)
    mid = [
        conf[np.searchsorted(cal.edges, conf, side="right") == b].mean()
        for b in range(len(cal.accuracy))
    ]
    assert np.max(np.abs(np.array(mid) - cal.accuracy)) < 0.08
    assert reference.accuracy == pytest.approx(
        float(np.dot(cal.accuracy, cal.counts) / 5000), abs=0.01
    )


def test_json_round_trip_is_canonical(reference: MonitorReference) -> None:
    data = reference.to_json()
    again = MonitorReference.from_json(data)
    assert again.to_json() == data
    assert again.digest() == reference.digest()
    assert b" " not in data and json.loads(data)["schema_version"] == 1


def test_wide_inputs_get_a_pca_view() -> None:
    rng = np.random.default_rng(0)
    images = rng.normal(size=(400, 3, 8, 8))
    images[:, 0] += rng.normal(size=(400, 1, 1)) * 3  # one strong direction
    ref = build_reference(images, rng.normal(size=(400, 4)), components=4)
    assert ref.projection is not None and ref.projection.source == "input"
    assert ref.projection.components.shape == (4, 192)
    assert np.allclose(
        ref.projection.components @ ref.projection.components.T, np.eye(4), atol=1e-9
    )
    assert [f.name for f in ref.features] == ["pc0", "pc1", "pc2", "pc3"]
    assert ref.features[0].std > 2 * ref.features[1].std  # the strong direction comes first
    assert MonitorReference.from_json(ref.to_json()).digest() == ref.digest()


def test_embeddings_are_the_view_when_given() -> None:
    rng = np.random.default_rng(0)
    ref = build_reference(
        rng.normal(size=(100, 1, 28, 28)),
        rng.normal(size=(100, 2)),
        embeddings=rng.normal(size=(100, 32)),
        embedding_output="penult",
        components=3,
    )
    assert ref.projection is not None
    assert (ref.projection.source, ref.projection.output, ref.width) == ("embedding", "penult", 32)


def test_a_rebaseline_can_keep_the_projection_it_watched() -> None:
    rng = np.random.default_rng(0)
    n = 800  # a 32-wide view is whitened from 20 reference rows per value (640) up
    emb = rng.normal(size=(n, 32))
    base = build_reference(rng.normal(size=(n, 4)), rng.normal(size=(n, 2)), embeddings=emb,
                           embedding_output="penult", components=3)
    shifted = emb * 0.5 + 1.0  # the cohort's new inputs, same embedding function
    again = build_reference(rng.normal(size=(n, 4)), rng.normal(size=(n, 2)),
                            embeddings=shifted, embedding_output="penult",
                            projection=base.projection)
    assert again.projection is not None and base.projection is not None
    assert np.array_equal(again.projection.components, base.projection.components)
    assert [f.name for f in again.features] == ["pc0", "pc1", "pc2"]
    moved = again.projection.apply(shifted)  # the histograms are re-fitted on the new data
    assert again.features[0].mean == pytest.approx(float(moved[:, 0].mean()), abs=1e-9)
    assert again.features[0].std == pytest.approx(base.features[0].std * 0.5, rel=1e-6)
    # the whitening is of the new data (the mean-shift test takes its whitened mean as 0 and
    # its covariance as the identity), not the old reference's
    assert base.projection.whiten is not None and again.projection.whiten is not None
    white = again.projection.whitened(shifted)
    assert np.allclose(white.mean(axis=0), 0, atol=1e-6)
    assert np.allclose(np.cov(white, rowvar=False), np.eye(white.shape[1]), atol=1e-6)
    assert not np.allclose(base.projection.whitened(shifted).mean(axis=0), 0, atol=0.1)


def test_a_kept_projection_without_whitening_is_kept_whole() -> None:
    rng = np.random.default_rng(0)
    base = build_reference(rng.normal(size=(200, 4)), rng.normal(size=(200, 2)),
                           embeddings=rng.normal(size=(200, 32)), embedding_output="penult",
                           components=3, whiten=0)
    again = build_reference(rng.normal(size=(100, 4)), rng.normal(size=(100, 2)),
                            embeddings=rng.normal(size=(100, 32)) + 1.0,
                            embedding_output="penult", projection=base.projection)
    assert again.projection is base.projection and base.projection.whiten is None
    assert json.loads(again.to_json())["projection"] == json.loads(base.to_json())["projection"]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"embeddings": np.zeros((10, 16)), "embedding_output": "penult"},  # width 16, not 32
        {"embeddings": np.ones((10, 32)), "embedding_output": "other"},  # another output
        {},  # the raw input, not an embedding
    ],
)
def test_a_kept_projection_must_fit_the_view(kwargs: dict) -> None:
    rng = np.random.default_rng(0)
    base = build_reference(rng.normal(size=(50, 4)), rng.normal(size=(50, 2)),
                           embeddings=rng.normal(size=(50, 32)), embedding_output="penult")
    with pytest.raises(MonitorReferenceError, match="projection kept"):
        build_reference(rng.normal(size=(10, 4)), rng.normal(size=(10, 2)),
                        projection=base.projection, **kwargs)


def _doc(reference: MonitorReference) -> dict:
    return json.loads(reference.to_json())


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.update(schema_version=2),
        lambda d: d.update(kind="window_sketch"),
        lambda d: d["features"][0].update(edges=d["features"][0]["edges"][::-1]),
        lambda d: d["features"][0]["edges"].__setitem__(0, "1"),
        lambda d: d["features"][0]["counts"].__setitem__(0, -1),
        lambda d: d["features"][0]["counts"].append(0),
        lambda d: d["features"][0].update(std=0.0),
        lambda d: d["features"][0].update(mode_share=1.5),
        lambda d: d["features"][1].update(name=d["features"][0]["name"]),
        lambda d: d["features"].extend(d["features"] * 30),
        lambda d: d.update(n=d["n"] + 1),
        lambda d: d["calibration"]["accuracy"].reverse(),
        lambda d: d["calibration"]["accuracy"].__setitem__(0, True),
        lambda d: d.update(classes=["only"]),
        lambda d: d.update(output_kind="softmax"),
        lambda d: d.update(accuracy=1.2),
        lambda d: d.update(projection={"source": "input", "mean": [0.0], "components": []}),
    ],
)
def test_malformed_references_are_refused(reference: MonitorReference, mutate) -> None:
    d = _doc(reference)
    mutate(d)
    with pytest.raises(MonitorReferenceError):
        MonitorReference.from_dict(d)


@pytest.mark.parametrize(
    "text", [b"{", b"[]", b'{"kind": "monitor_reference", "n": NaN}', b"1" * (33 << 20)]
)
def test_bytes_that_are_not_a_reference_are_refused(text: bytes) -> None:
    with pytest.raises(MonitorReferenceError):
        MonitorReference.from_json(text)


def test_build_refuses_non_finite_reference_data() -> None:
    x, logits, y = classifier_data(100, np.random.default_rng(0))
    x[3, 2] = np.nan
    with pytest.raises(MonitorReferenceError, match="finite"):
        build_reference(x, logits, y)
    with pytest.raises(MonitorReferenceError, match="labels"):
        build_reference(np.nan_to_num(x), logits, y + 5)


def test_statistics_are_stored_to_seven_significant_digits() -> None:
    """Bin edges, moments and the calibration at float32's precision (the bytes a re-baselined
    reference ships again in a fix's delta), still a valid reference: edges strictly
    increasing, counts binned by the stored edges, every reference value within [low, high]."""
    rng = np.random.default_rng(7)
    x = rng.normal(1234.5678, 0.01, (400, 3))  # values whose 17-digit quantiles are long
    logits = rng.normal(0, 1, (400, 4))
    ref = build_reference(x, logits, rng.integers(0, 4, 400), output_kind="logits")

    def digits(v: float) -> int:
        return len(f"{v!r}".split("e")[0].replace("-", "").replace(".", "").strip("0"))

    for i, ft in enumerate(ref.features):
        stats = [*ft.edges.tolist(), ft.mean, ft.std, ft.mode_share]
        assert max(digits(v) for v in stats) <= 7, stats
        assert np.all(np.diff(ft.edges) > 0)
        col = x[:, i]
        assert ft.low <= col.min() and ft.high >= col.max()
        binned = np.bincount(np.searchsorted(ft.edges, col, side="right"),
                             minlength=len(ft.edges) + 1)
        assert np.array_equal(binned, ft.counts)
    cal = ref.calibration
    assert cal is not None and np.all(np.diff(cal.accuracy) >= 0)
    assert max(digits(v) for v in [*cal.edges.tolist(), *cal.accuracy.tolist()]) <= 7
    assert MonitorReference.from_json(ref.to_json()).digest() == ref.digest()
