"""Local trainers the ClientApp drives, without Flower: the interface and the head trainer.

A trainer fits from the global arrays and evaluates arrays on the node's held-out labelled
samples. The head trainer is numpy only; a torch fine-tune (build side) has the same interface.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import numpy as np
import numpy.typing as npt

from edgeloop.errors import DataError, InputError
from edgeloop.federated.device._head import Head, TrainConfig, train_head

__all__ = ["HeadTrainer", "LocalTrainer", "split_held_out", "train_config"]

NDArrays = dict[str, npt.NDArray[np.generic]]


class LocalTrainer(Protocol):
    """What the ClientApp needs from a trainer: fit from global arrays, evaluate arrays."""

    def fit(self, arrays: NDArrays, config: TrainConfig) -> tuple[NDArrays, int, float]:
        """New arrays, samples used, final training loss."""
        ...

    def evaluate(self, arrays: NDArrays) -> tuple[float, float, int]:
        """(loss, accuracy, samples) on the node's held-out labelled samples."""
        ...


def split_held_out(x: npt.NDArray[np.float32], y: npt.NDArray[np.int64], share: float = 0.2,
                   ) -> tuple[tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]],
                              tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]]:
    """(train, held-out): every ``round(1/share)``-th labelled sample is held out."""
    if not 0 < share < 1:
        raise InputError(f"held-out share must be in (0, 1), got {share!r}")
    every = max(2, round(1 / share))
    held = np.arange(len(y)) % every == every - 1
    return (x[~held], y[~held]), (x[held], y[held])


class HeadTrainer:
    """The torch-free head trainer on a node's labelled features (see ``feedback_features``)."""

    def __init__(self, train: tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]],
                 held_out: tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]) -> None:
        self.train, self.held_out = train, held_out

    def fit(self, arrays: NDArrays, config: TrainConfig) -> tuple[NDArrays, int, float]:
        result = train_head(Head.from_arrays(arrays), *self.train, config)
        return dict(result.head.to_arrays()), result.n_samples, result.loss_after

    def evaluate(self, arrays: NDArrays) -> tuple[float, float, int]:
        x, y = self.held_out
        if len(y) == 0:
            raise DataError("evaluate: this node holds out no labelled samples")
        loss, acc = Head.from_arrays(arrays).evaluate(x, y)
        return loss, acc, len(y)


def _number(config: Mapping[str, object], key: str, default: float) -> float:
    value = config.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InputError(f"round config {key!r}: expected a number, got {value!r:.40}")
    return float(value)


def train_config(config: Mapping[str, object]) -> TrainConfig:
    """The local training settings from a round's config (Flower's names)."""
    return TrainConfig(
        epochs=int(_number(config, "epochs", 5)),
        lr=_number(config, "lr", 0.1),
        batch_size=int(_number(config, "batch-size", 32)),
        proximal_mu=_number(config, "proximal-mu", 0.0),
        seed=int(_number(config, "seed", 0)) * 1000 + int(_number(config, "server-round", 0)),
    )
