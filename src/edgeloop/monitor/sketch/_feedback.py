"""Delayed labels: the application says later what the right answer was.

The agent records each prediction it may get a label for (id, predicted class, calibrated
probability of being right, optionally the inputs and the fleet model's class scores);
``feedback(id, label)`` finds it, counts it into the window (realized accuracy where labels
exist) and keeps the labelled sample for fine-tuning and personalization. Both tables are
bounded (entries and input bytes) and evict the oldest first, so a chatty or hostile local
application cannot grow the agent's memory.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from edgeloop.errors import MonitorError

__all__ = ["Feedback", "FeedbackStore"]

MAX_ID_LEN = 128


@dataclass(frozen=True)
class Feedback:
    """One label matched to its prediction."""

    prediction_id: str
    predicted: int
    label: int
    p_correct: float | None

    @property
    def correct(self) -> bool:
        return self.predicted == self.label


@dataclass
class _Pending:
    predicted: int
    p_correct: float | None
    inputs: npt.NDArray[np.float32] | None
    scores: npt.NDArray[np.float32] | None = None

    @property
    def nbytes(self) -> int:
        return sum(0 if a is None else a.nbytes for a in (self.inputs, self.scores))


_Labelled = tuple[npt.NDArray[np.float32], int, int, npt.NDArray[np.float32] | None]


def _nbytes(item: _Labelled) -> int:
    return item[0].nbytes + (0 if item[3] is None else item[3].nbytes)


class FeedbackStore:
    """Predictions awaiting labels, and the labelled samples they became. Thread-safe."""

    def __init__(
        self,
        n_classes: int,
        *,
        capacity: int = 10_000,
        max_input_bytes: int = 16 << 20,
        keep_labelled: int = 10_000,
    ) -> None:
        if n_classes < 2 or capacity < 1 or keep_labelled < 0 or max_input_bytes < 0:
            raise MonitorError("FeedbackStore: n_classes >= 2, capacity >= 1 and sizes >= 0")
        self.n_classes = n_classes
        self.capacity = capacity
        self.max_input_bytes = max_input_bytes
        self.keep_labelled = keep_labelled
        self._pending: OrderedDict[str, _Pending] = OrderedDict()
        self._labelled: OrderedDict[str, _Labelled] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.n = 0  # labels matched since the last take_window()
        self.correct = 0
        self.evicted = 0
        self.unmatched = 0

    def __len__(self) -> int:
        return len(self._pending)

    def record(
        self,
        prediction_id: str,
        predicted: int,
        p_correct: float | None = None,
        inputs: npt.ArrayLike | None = None,
        scores: npt.ArrayLike | None = None,
    ) -> None:
        """Remember a prediction; the oldest ones go when the store is full. ``scores``: the
        fleet model's class output for it (kept with the inputs, for personalization)."""
        _check_id(prediction_id)
        if not 0 <= predicted < self.n_classes:
            raise MonitorError(
                f"feedback: predicted class {predicted} not in 0..{self.n_classes - 1}"
            )
        x = None if inputs is None else np.array(inputs, dtype=np.float32)
        if x is not None and x.nbytes > self.max_input_bytes:
            x = None  # one sample larger than the whole budget: keep the label only
        sc = None if x is None or scores is None else np.array(scores, dtype=np.float32)
        if sc is not None and (sc.reshape(-1).shape != (self.n_classes,)
                               or not np.isfinite(sc).all()):
            sc = None  # not one finite score per class: kept without them
        entry = _Pending(predicted, p_correct, x, None if sc is None else sc.reshape(-1))
        with self._lock:
            old = self._pending.pop(prediction_id, None)
            if old is not None:
                self._bytes -= old.nbytes
            self._pending[prediction_id] = entry
            self._bytes += entry.nbytes
            self._evict()

    def feedback(self, prediction_id: str, label: int) -> Feedback | None:
        """Match a label to its prediction; None when the id is unknown, evicted or already
        labelled (a second label for one prediction is ignored)."""
        _check_id(prediction_id)
        if (
            isinstance(label, bool)
            or not isinstance(label, int | np.integer)
            or not (0 <= int(label) < self.n_classes)
        ):
            raise MonitorError(
                f"feedback: label {label!r:.40} not a class in 0..{self.n_classes - 1}"
            )
        with self._lock:
            entry = self._pending.pop(prediction_id, None)
            if entry is None:
                self.unmatched += 1
                return None
            self.n += 1
            self.correct += int(entry.predicted == int(label))
            if entry.inputs is not None:
                if self.keep_labelled:
                    self._labelled[prediction_id] = (entry.inputs, int(label), entry.predicted,
                                                     entry.scores)
                else:
                    self._bytes -= entry.nbytes
            self._evict()
        return Feedback(prediction_id, entry.predicted, int(label), entry.p_correct)

    def _evict(self) -> None:
        while len(self._pending) > self.capacity or (
            self._bytes > self.max_input_bytes and (self._pending or self._labelled)
        ):
            table = (
                self._labelled
                if self._labelled and (len(self._pending) <= self.capacity)
                else self._pending
            )
            _, item = table.popitem(last=False)
            self._bytes -= item.nbytes if isinstance(item, _Pending) else _nbytes(item)
            self.evicted += 1
        while len(self._labelled) > self.keep_labelled:
            _, labelled = self._labelled.popitem(last=False)
            self._bytes -= _nbytes(labelled)

    def realized_accuracy(self) -> float | None:
        """Share of labelled predictions that were right since the last window, or None."""
        with self._lock:
            return self.correct / self.n if self.n else None

    def take_window(self) -> tuple[int, int]:
        """(labels, correct) since the last call, and start counting afresh."""
        with self._lock:
            out = (self.n, self.correct)
            self.n = self.correct = 0
        return out

    def labelled_samples(self) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        """The kept labelled inputs and labels, oldest first, for fine-tuning on the device."""
        x, y, _ = self.labelled_with_predictions()
        return x, y

    def labelled_with_scores(
        self,
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64], npt.NDArray[np.int64],
               npt.NDArray[np.float32] | None]:
        """Like :meth:`labelled_with_predictions`, and the fleet model's class scores for each
        sample (n, classes), None unless every kept sample has them."""
        with self._lock:
            items = list(self._labelled.values())
        x, y, p = self._stack(items)
        scores = [item[3] for item in items]
        if not items or any(sc is None for sc in scores):
            return x, y, p, None
        return x, y, p, np.stack([sc for sc in scores if sc is not None])

    def labelled_with_predictions(
        self,
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """(inputs, labels, the class the served model predicted for each), oldest first, from
        one snapshot: what personalization trains on and scores the served model against."""
        with self._lock:
            items = list(self._labelled.values())
        return self._stack(items)

    @staticmethod
    def _stack(items: list[_Labelled]) -> tuple[
        npt.NDArray[np.float32], npt.NDArray[np.int64], npt.NDArray[np.int64]
    ]:
        if not items:
            empty = np.zeros((0,), dtype=np.int64)
            return np.zeros((0,), dtype=np.float32), empty, empty.copy()
        shapes = {x.shape for x, _, _, _ in items}
        if len(shapes) != 1:
            raise MonitorError(f"feedback: labelled inputs of different shapes {sorted(shapes)}")
        return (
            np.stack([x for x, _, _, _ in items]),
            np.array([y for _, y, _, _ in items], dtype=np.int64),
            np.array([p for _, _, p, _ in items], dtype=np.int64),
        )

    @property
    def input_bytes(self) -> int:
        return self._bytes


def _check_id(prediction_id: str) -> None:
    if not isinstance(prediction_id, str) or not 0 < len(prediction_id) <= MAX_ID_LEN:
        raise MonitorError(
            f"feedback: prediction id must be a string of 1..{MAX_ID_LEN} "
            f"characters, got {prediction_id!r:.40}"
        )
