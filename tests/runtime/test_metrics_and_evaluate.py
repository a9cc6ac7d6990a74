"""numpy metrics (checked against scikit-learn where installed) and evaluate() on known models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgeloop.errors import DataError, ModelInputError
from edgeloop.runtime import Session, evaluate, metrics, run_batched


def test_roc_auc_by_ranks_handles_ties() -> None:
    assert metrics.roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    assert metrics.roc_auc([0, 1], [0.5, 0.5]) == pytest.approx(0.5)
    assert metrics.roc_auc([1, 1, 0], [3, 2, 1]) == 1.0


def test_metrics_agree_with_scikit_learn() -> None:
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(1)
    y = rng.integers(0, 4, 300)
    pred = np.where(rng.random(300) < 0.7, y, rng.integers(0, 4, 300))
    assert metrics.accuracy(y, pred) == pytest.approx(sk.accuracy_score(y, pred))
    assert metrics.macro_f1(y, pred) == pytest.approx(sk.f1_score(y, pred, average="macro"))
    yb = rng.integers(0, 2, 300)
    s = np.round(rng.random(300) + yb * 0.3, 1)  # rounded: many ties
    assert metrics.roc_auc(yb, s) == pytest.approx(sk.roc_auc_score(yb, s))


def test_metric_errors_say_what_is_wrong() -> None:
    with pytest.raises(DataError, match="both positive and negative"):
        metrics.roc_auc([1, 1], [0.2, 0.3])
    with pytest.raises(DataError, match="binary labels"):
        metrics.roc_auc([0, 2], [0.2, 0.3])
    with pytest.raises(DataError, match="3 labels, y_pred 2"):
        metrics.accuracy([0, 1, 1], [0, 1])


def test_evaluate_classification_is_exact_on_the_identity_model(identity_classifier: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((50, 3)).astype(np.float32)
    y = np.argmax(x, axis=1)
    y_wrong = (y + 1) % 3
    assert evaluate(identity_classifier, x, y) == {
        "samples": 50.0,
        "accuracy": 1.0,
        "macro_f1": 1.0,
    }
    assert evaluate(identity_classifier, x, y_wrong, batch_size=7)["accuracy"] == 0.0


def test_evaluate_anomaly_scores_reconstruction_error(clip_autoencoder: Path) -> None:
    rng = np.random.default_rng(0)
    normal = rng.uniform(-0.9, 0.9, (40, 6)).astype(np.float32)
    anomalies = rng.uniform(2, 3, (10, 6)).astype(np.float32)
    x = np.concatenate([normal, anomalies])
    y = np.r_[np.zeros(40), np.ones(10)].astype(np.int64)
    result = evaluate(clip_autoencoder, x, y, task="anomaly")
    assert result["roc_auc"] == 1.0


def test_evaluate_needs_labels(identity_classifier: Path) -> None:
    with pytest.raises(DataError, match="needs labels"):
        evaluate(identity_classifier, np.zeros((2, 3), np.float32), None)


def test_run_batched_splits_rows_and_honours_a_fixed_batch(
    two_input_model: Path, fixed_batch_model: Path
) -> None:
    s = Session(two_input_model)
    x = {"x": np.ones((10, 8), np.float32), "ids": np.zeros((10, 4), np.int64)}
    whole = s.run(x)["score"]
    np.testing.assert_allclose(run_batched(s, x, batch_size=3)["score"], whole, rtol=1e-6)
    fixed = run_batched(Session(fixed_batch_model), np.full((5, 4), -1.0, np.float32))
    assert fixed["y"].shape == (5, 4) and fixed["y"].max() == 0.0
    with pytest.raises(ModelInputError, match="different numbers of rows"):
        run_batched(s, {"x": x["x"], "ids": x["ids"][:4]})


@given(
    st.lists(st.tuples(st.integers(0, 1), st.integers(-5, 5)), min_size=2, max_size=60).filter(
        lambda rows: len({label for label, _ in rows}) == 2
    )
)
def test_roc_auc_flips_with_the_score_and_matches_pair_counting(
    rows: list[tuple[int, int]],
) -> None:
    y = np.array([label for label, _ in rows])
    s = np.array([score for _, score in rows], dtype=np.float64)
    auc = metrics.roc_auc(y, s)
    assert metrics.roc_auc(y, -s) == pytest.approx(1 - auc)
    pos, neg = s[y == 1], s[y == 0]
    pairs = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    assert auc == pytest.approx(pairs / (len(pos) * len(neg)))
