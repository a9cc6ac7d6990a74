import numpy as np
import pytest

from edgeloop.errors import MonitorError
from edgeloop.monitor.sketch import FeedbackStore, MonitorReference, WindowSketch


def test_labels_match_their_predictions_and_count_into_the_window() -> None:
    store = FeedbackStore(3)
    store.record("a", 1, 0.9, inputs=[1.0, 2.0])
    store.record("b", 2, 0.6, inputs=[3.0, 4.0])
    fa = store.feedback("a", 1)
    fb = store.feedback("b", 0)
    assert fa is not None and fa.correct and fa.p_correct == 0.9
    assert fb is not None and not fb.correct
    assert store.realized_accuracy() == 0.5
    assert store.take_window() == (2, 1)
    assert store.take_window() == (0, 0)
    x, y = store.labelled_samples()
    assert x.tolist() == [[1.0, 2.0], [3.0, 4.0]] and y.tolist() == [1, 0]


def test_unknown_and_repeated_labels_are_ignored() -> None:
    store = FeedbackStore(2)
    store.record("a", 0)
    assert store.feedback("a", 0) is not None
    assert store.feedback("a", 1) is None  # one label per prediction
    assert store.feedback("never", 1) is None
    assert (store.n, store.unmatched) == (1, 2)


def test_the_oldest_predictions_go_first_when_full() -> None:
    store = FeedbackStore(2, capacity=3)
    for i in range(5):
        store.record(f"p{i}", 0)
    assert len(store) == 3 and store.evicted == 2
    assert store.feedback("p0", 0) is None and store.feedback("p4", 0) is not None


def test_input_bytes_stay_within_the_budget() -> None:
    store = FeedbackStore(2, max_input_bytes=4 * 100 * 10, keep_labelled=5)
    for i in range(50):
        store.record(f"p{i}", 1, inputs=np.ones(100))
        store.feedback(f"p{i}", 1) if i % 2 else None
    assert store.input_bytes <= 4000
    x, y = store.labelled_samples()
    assert len(x) <= 5 and set(y.tolist()) == {1}
    assert x.shape[1:] == (100,)


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.record("", 0),
        lambda s: s.record("x" * 129, 0),
        lambda s: s.record("a", 3),
        lambda s: s.feedback("a", -1),
        lambda s: s.feedback("a", True),
        lambda s: s.feedback("a", "1"),
    ],
)
def test_bad_ids_and_classes_are_refused(call) -> None:
    with pytest.raises(MonitorError):
        call(FeedbackStore(3))


def test_feedback_into_a_sketch(reference: MonitorReference) -> None:
    store, sketch = FeedbackStore(3), WindowSketch(reference)
    p = sketch.update(np.zeros((2, 6)), np.array([[3.0, 0, 0], [0, 0, 3.0]]))
    assert p is not None
    store.record("a", 0, float(p[0]))
    store.record("b", 2, float(p[1]))
    for pid, label in (("a", 0), ("b", 1)):
        fb = store.feedback(pid, label)
        assert fb is not None
        sketch.add_feedback(fb.predicted, fb.label, fb.p_correct)
    assert (sketch.fb_n, sketch.fb_correct, sketch.fb_labels.tolist()) == (2, 1, [1, 1, 0])
    assert sketch.fb_expected == pytest.approx(float(p.sum()))


def test_fleet_scores_are_kept_with_labelled_samples_and_counted_in_the_budget() -> None:
    fb = FeedbackStore(3, max_input_bytes=8 * 4 * 7, keep_labelled=100)
    for i in range(6):
        fb.record(f"p{i}", 0, inputs=np.full(4, i), scores=np.array([0.5, 0.25, 0.25]) * (i + 1))
        fb.feedback(f"p{i}", 1)
    x, y, p, scores = fb.labelled_with_scores()
    assert scores is not None and scores.shape == (6, 3)
    assert np.allclose(scores[2], [1.5, 0.75, 0.75])
    assert fb.input_bytes == 6 * 7 * 4  # 4 inputs and 3 scores per sample, float32
    fb.record("q", 0, inputs=np.zeros(4), scores=np.zeros(3))
    fb.record("r", 0, inputs=np.zeros(4), scores=np.zeros(3))
    assert fb.input_bytes <= 8 * 4 * 7 and len(fb.labelled_samples()[1]) == 6
    fb.record("s", 0, inputs=np.zeros(4), scores=np.zeros(3))  # over budget: oldest labelled go
    assert fb.input_bytes <= 8 * 4 * 7 and len(fb.labelled_samples()[1]) == 5
    # scores of the wrong length or not finite are dropped; then not every sample has them
    fb.record("t", 0, inputs=np.zeros(4), scores=np.array([np.nan, 0, 1]))
    fb.feedback("t", 2)
    assert fb.labelled_with_scores()[3] is None
    assert fb.labelled_with_predictions()[1][-1] == 2  # kept, without its scores
