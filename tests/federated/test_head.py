"""The torch-free head trainer: softmax regression in numpy, FedProx's proximal term."""

import numpy as np
import pytest

from edgeloop.errors import DataError, InputError
from edgeloop.federated.device import Head, TrainConfig, train_head


def _blobs(n: int, seed: int = 0, d: int = 6, k: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(99).normal(scale=2.0, size=(k, d))
    y = rng.integers(0, k, n)
    return (centres[y] + rng.normal(size=(n, d))).astype(np.float32), y


def test_training_learns_separable_classes_from_zero() -> None:
    x, y = _blobs(300)
    xt, yt = _blobs(300, seed=1)
    head = Head.zeros(6, 3)

    result = train_head(head, x, y, TrainConfig(epochs=10, lr=0.05))

    assert head.evaluate(xt, yt)[1] < 0.5
    assert result.head.evaluate(xt, yt)[1] > 0.9
    assert result.loss_after < result.loss_before
    assert result.n_samples == 300 and result.steps == 10 * 10


def test_the_proximal_term_keeps_the_head_near_the_global_one() -> None:
    x, y = _blobs(200)
    start = Head(np.random.default_rng(3).normal(size=(6, 3)).astype(np.float32),
                 np.zeros(3, np.float32))

    free = train_head(start, x, y, TrainConfig(epochs=5, lr=0.05, proximal_mu=0.0)).head
    held = train_head(start, x, y, TrainConfig(epochs=5, lr=0.05, proximal_mu=5.0)).head

    def dist(h: Head) -> float:
        return float(np.linalg.norm(h.weight - start.weight))

    assert dist(held) < 0.5 * dist(free)


def test_same_seed_same_head() -> None:
    x, y = _blobs(100)
    a = train_head(Head.zeros(6, 3), x, y, TrainConfig(seed=4)).head
    b = train_head(Head.zeros(6, 3), x, y, TrainConfig(seed=4)).head
    assert np.array_equal(a.weight, b.weight) and np.array_equal(a.bias, b.bias)


def test_arrays_round_trip() -> None:
    head = Head(np.ones((4, 2), np.float32), np.array([0.5, -0.5], np.float32))
    again = Head.from_arrays(head.to_arrays())
    assert np.array_equal(again.weight, head.weight) and again.bias.tolist() == [0.5, -0.5]


@pytest.mark.parametrize(
    "weight, bias",
    [
        (np.ones((4,), np.float32), np.zeros(4, np.float32)),
        (np.ones((4, 1), np.float32), np.zeros(1, np.float32)),
        (np.ones((4, 3), np.float32), np.zeros(2, np.float32)),
        (np.full((4, 3), np.nan, np.float32), np.zeros(3, np.float32)),
    ],
)
def test_malformed_heads_are_refused(weight: np.ndarray, bias: np.ndarray) -> None:
    with pytest.raises(InputError):
        Head(weight, bias)


@pytest.mark.parametrize(
    "x, y",
    [
        (np.ones((5, 7), np.float32), np.zeros(5, np.int64)),  # wrong width
        (np.ones((5, 6), np.float32), np.zeros(4, np.int64)),  # label count
        (np.ones((5, 6), np.float32), np.full(5, 3)),  # class out of range
        (np.ones((5, 6), np.float32), np.full(5, 0.5)),  # not integers
        (np.full((5, 6), np.inf, np.float32), np.zeros(5, np.int64)),
        (np.zeros((0, 6), np.float32), np.zeros(0, np.int64)),  # nothing labelled
    ],
)
def test_bad_samples_are_refused(x: np.ndarray, y: np.ndarray) -> None:
    with pytest.raises(DataError):
        train_head(Head.zeros(6, 3), x, y)


@pytest.mark.parametrize(
    "kw", [{"epochs": 0}, {"lr": float("nan")}, {"lr": 0.0}, {"momentum": 1.0},
           {"proximal_mu": -1.0}, {"batch_size": 0}]
)
def test_train_config_ranges(kw: dict[str, float]) -> None:
    with pytest.raises(InputError, match=next(iter(kw))):
        TrainConfig(**kw)  # type: ignore[arg-type]



def test_held_out_keeps_the_best_epoch_and_never_loses_to_the_start() -> None:
    x, y = _blobs(300)
    xv, yv = _blobs(200, seed=2)
    start = train_head(Head.zeros(6, 3), x, y, TrainConfig(epochs=10, lr=0.05)).head
    wrong = (y + 1) % 3  # labels the held-out samples contradict: every epoch is worse
    drifted = train_head(start, x, wrong, TrainConfig(epochs=3, lr=0.5))
    assert drifted.head.evaluate(xv, yv)[1] < start.evaluate(xv, yv)[1] - 0.3
    kept = train_head(start, x, wrong, TrainConfig(epochs=3, lr=0.5), held_out=(xv, yv))
    assert kept.best_epoch == 0 and kept.head == start
    assert kept.held_out_accuracy == start.evaluate(xv, yv)[1]
    # from zero, training helps: a later epoch is kept, scored on the held-out samples
    learnt = train_head(Head.zeros(6, 3), x, y, TrainConfig(epochs=10, lr=0.05),
                        held_out=(xv, yv))
    assert learnt.best_epoch is not None and learnt.best_epoch >= 1
    assert learnt.held_out_accuracy == learnt.head.evaluate(xv, yv)[1] > 0.9
    assert learnt.steps == 10 * 10  # every epoch ran; the best one was kept


def test_an_empty_or_malformed_held_out_split_is_refused() -> None:
    x, y = _blobs(50)
    with pytest.raises(DataError):
        train_head(Head.zeros(6, 3), x, y, held_out=(x[:0], y[:0]))
    with pytest.raises(DataError):
        train_head(Head.zeros(6, 3), x, y, held_out=(x[:, :4], y))
