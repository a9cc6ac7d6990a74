"""A reusable training loop (``fit``) and scoring of a PyTorch model on a dataset."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np
import torch
from torch import nn

from edgeloop.data import Dataset, Inputs
from edgeloop.errors import DataError, InputError
from edgeloop.runtime import metrics
from edgeloop.zoo._augment import Augment, augmentation, augmentation_name

__all__ = [
    "Batch",
    "FitResult",
    "LossFn",
    "evaluate_model",
    "fit",
    "forward",
    "predict",
    "primary_metric",
    "to_tensors",
]

#: A batch of inputs as tensors: one tensor, or name -> tensor in the model's input order.
Batch: TypeAlias = torch.Tensor | dict[str, torch.Tensor]
#: ``loss_fn(model, xb, yb) -> scalar loss``; ``yb`` is None for unlabelled data.
LossFn: TypeAlias = Callable[[nn.Module, Batch, "torch.Tensor | None"], torch.Tensor]
#: ``progress(epoch, epochs, stats)`` after each epoch (epoch counts from 1).
Progress: TypeAlias = Callable[[int, int, Mapping[str, float]], None]


def to_tensors(x: Inputs) -> Batch:
    """numpy inputs (an array, or a dict of arrays) as tensors, sharing memory where possible."""
    if isinstance(x, dict):
        return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in x.items()}
    return torch.from_numpy(np.ascontiguousarray(x))


def forward(model: nn.Module, xb: Batch) -> torch.Tensor:
    """Call ``model`` on a batch: multi-input batches are passed positionally, in order."""
    out = model(*xb.values()) if isinstance(xb, dict) else model(xb)
    if not isinstance(out, torch.Tensor):
        raise DataError(f"the model returned {type(out).__name__}; expected one tensor")
    return out


def default_loss(task: str) -> LossFn:
    """Cross-entropy on logits for classification; mean squared reconstruction for anomaly."""

    def classification(model: nn.Module, xb: Batch, yb: torch.Tensor | None) -> torch.Tensor:
        if yb is None:
            raise DataError("classification training needs labels; the dataset has none")
        return nn.functional.cross_entropy(forward(model, xb), yb)

    def reconstruction(model: nn.Module, xb: Batch, yb: torch.Tensor | None) -> torch.Tensor:
        if isinstance(xb, dict):
            raise DataError("an autoencoder takes one input array; the dataset has several")
        return nn.functional.mse_loss(forward(model, xb), xb)

    return reconstruction if task == "anomaly" else classification


@torch.no_grad()
def predict(model: nn.Module, data: Dataset, batch_size: int = 256) -> np.ndarray:
    """The model's outputs on every sample of ``data``, in eval mode, as one array."""
    was_training = model.training
    model.eval()
    try:
        outs = [forward(model, to_tensors(xb)).numpy() for xb, _ in data.batches(batch_size)]
    finally:
        model.train(was_training)
    return np.concatenate(outs) if outs else np.empty((0,), np.float32)


def primary_metric(task: str) -> str:
    return "roc_auc" if task == "anomaly" else "accuracy"


def evaluate_model(model: nn.Module, data: Dataset, batch_size: int = 256) -> dict[str, float]:
    """Task metrics, named as ``edgeloop.runtime.evaluate`` names them on the ONNX model.

    classification: accuracy and macro_f1; anomaly: roc_auc of the reconstruction error (when
    both labels occur) and the mean reconstruction error ``score_mean``.
    """
    if data.y is None and data.task != "anomaly":
        raise DataError(f"evaluating on {data.name!r} needs labels; it has none")
    out = predict(model, data, batch_size)
    y = data.y
    if data.task == "anomaly":
        x = next(iter(data.inputs.values()))
        err = metrics.reconstruction_error(x, out)
        res = {"score_mean": float(err.mean())}
        if y is not None and len(np.unique(y)) == 2:
            res["roc_auc"] = metrics.roc_auc(y, err)
        return res
    assert y is not None
    pred = out.reshape(len(out), -1).argmax(axis=1)
    return {"accuracy": metrics.accuracy(y, pred), "macro_f1": metrics.macro_f1(y, pred)}


@dataclass(frozen=True)
class FitResult:
    """What ``fit`` did: one row of stats per epoch, and the wall time."""

    epochs: int
    history: tuple[dict[str, float], ...]
    seconds: float

    @property
    def final(self) -> dict[str, float]:
        return dict(self.history[-1]) if self.history else {}


def fit(
    model: nn.Module,
    train: Dataset,
    val: Dataset | None = None,
    *,
    epochs: int = 10,
    lr: float = 3e-3,
    batch_size: int = 64,
    loss_fn: LossFn | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    progress: Progress | None = None,
    seed: int = 0,
    weight_decay: float = 1e-4,
    augment: str | Augment | None = None,
) -> FitResult:
    """Train ``model`` in place on ``train`` for ``epochs`` passes.

    Default optimizer: AdamW with a cosine learning-rate schedule over the run. ``loss_fn``
    replaces the task's default loss (cross-entropy, or reconstruction MSE for anomaly), e.g.
    with a distillation loss. Shuffling and dropout are seeded by ``seed``, so the same call
    gives the same weights. After each epoch ``progress(epoch, epochs, stats)`` is called with
    ``train_loss`` and, when ``val`` is given, ``val_loss`` and its task metrics.
    ``augment`` (``"shift"``, ``"flip"``, ``"shift+flip"`` or a callable, see
    :func:`edgeloop.zoo.augmentation`) transforms each training batch before ``loss_fn`` sees
    it; validation batches are left alone.
    """
    aug = augmentation(augment)  # a bad spec is refused before any training
    if epochs < 1:
        raise DataError(f"epochs must be >= 1, got {epochs}")
    if batch_size < 1:
        raise DataError(f"batch_size must be >= 1, got {batch_size}")
    if len(train) == 0:
        raise DataError(f"training set {train.name!r} is empty")
    loss_fn = loss_fn or default_loss(train.task)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    opt = optimizer or torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps_per_epoch = math.ceil(len(train) / batch_size)
    sched: Any = None
    if optimizer is None:
        sched = torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=lr, total_steps=epochs * steps_per_epoch, pct_start=0.15
        )
    history: list[dict[str, float]] = []
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        model.train()
        shuffled = train.take(rng.permutation(len(train)))
        total, count = 0.0, 0
        for xb, yb in shuffled.batches(batch_size):
            n = len(next(iter(_inputs(xb).values())))
            if n < 2 and steps_per_epoch > 1:
                continue  # a last batch of one sample: batch norm cannot train on it
            opt.zero_grad(set_to_none=True)
            y_t = None if yb is None else torch.from_numpy(yb)
            x_t = to_tensors(xb)
            if aug is not None:
                if isinstance(x_t, dict):
                    raise InputError(
                        f"augmentation {augmentation_name(augment)!r} works on one image or "
                        f"series input; {train.name!r} has inputs {list(x_t)}"
                    )
                x_t = aug(x_t, gen)
            loss = loss_fn(model, x_t, y_t)
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
            if sched is not None:
                sched.step()
            total += float(loss.detach()) * n
            count += n
        stats = {"epoch": float(epoch), "train_loss": total / max(count, 1)}
        if val is not None and len(val):
            stats["val_loss"] = _mean_loss(model, val, loss_fn, batch_size)
            if val.y is not None and (val.task != "anomaly" or len(np.unique(val.y)) == 2):
                stats.update({f"val_{k}": v for k, v in evaluate_model(model, val).items()})
        history.append(stats)
        if progress is not None:
            progress(epoch, epochs, stats)
    model.eval()
    return FitResult(epochs, tuple(history), time.perf_counter() - start)


def _inputs(xb: Inputs) -> dict[str, np.ndarray]:
    return xb if isinstance(xb, dict) else {"input": xb}


@torch.no_grad()
def _mean_loss(model: nn.Module, data: Dataset, loss_fn: LossFn, batch_size: int) -> float:
    model.eval()
    total, count = 0.0, 0
    for xb, yb in data.batches(batch_size):
        n = len(next(iter(_inputs(xb).values())))
        y_t = None if yb is None else torch.from_numpy(yb)
        total += float(loss_fn(model, to_tensors(xb), y_t)) * n
        count += n
    return total / max(count, 1)
