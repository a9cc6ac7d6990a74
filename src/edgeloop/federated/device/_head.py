"""The torch-free head trainer: a softmax-regression classifier head over the deployed model's
penultimate activations, trained with minibatch SGD in numpy.

The deployed ONNX model exposes its penultimate activations as the graph output
``edgeloop_embedding`` (added at pack time for monitoring, ``optimize.add_embedding_output``);
the head is the model's last MatMul/Gemm (``logits = features @ weight + bias``). A device
trains only that head, so it needs numpy and ONNX Runtime, no torch.

FedProx: ``proximal_mu > 0`` adds ``mu/2 * ||w - w_global||^2`` to the loss (Flower's FedProx
strategy only sends ``proximal-mu``; the client adds the term, here).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from edgeloop.errors import DataError, InputError

__all__ = ["Head", "TrainConfig", "TrainResult", "train_head"]

F32 = npt.NDArray[np.float32]
MAX_FEATURES = 1 << 16
MAX_CLASSES = 4096


@dataclass(frozen=True)
class Head:
    """A linear classifier head: ``logits = features @ weight + bias``; weight (d, k), bias (k,)."""

    weight: F32
    bias: F32

    def __post_init__(self) -> None:
        w = np.asarray(self.weight, dtype=np.float32)
        b = np.asarray(self.bias, dtype=np.float32).reshape(-1)
        if w.ndim != 2 or not (1 <= w.shape[0] <= MAX_FEATURES and 2 <= w.shape[1] <= MAX_CLASSES):
            raise InputError(f"head weight: expected (features, classes) with features in "
                             f"1..{MAX_FEATURES} and classes in 2..{MAX_CLASSES}, got {w.shape}")
        if b.shape != (w.shape[1],):
            raise InputError(f"head bias: expected shape ({w.shape[1]},), got {b.shape}")
        if not (np.all(np.isfinite(w)) and np.all(np.isfinite(b))):
            raise InputError("head weight and bias must be finite")
        object.__setattr__(self, "weight", w)
        object.__setattr__(self, "bias", b)

    @property
    def n_features(self) -> int:
        return int(self.weight.shape[0])

    @property
    def n_classes(self) -> int:
        return int(self.weight.shape[1])

    @classmethod
    def zeros(cls, n_features: int, n_classes: int) -> Head:
        return cls(np.zeros((n_features, n_classes), np.float32), np.zeros(n_classes, np.float32))

    def to_arrays(self) -> dict[str, F32]:
        return {"weight": self.weight, "bias": self.bias}

    @classmethod
    def from_arrays(cls, arrays: dict[str, npt.NDArray[np.generic]]) -> Head:
        if set(arrays) != {"weight", "bias"}:
            raise InputError(f"head arrays: expected 'weight' and 'bias', got {sorted(arrays)}")
        return cls(np.asarray(arrays["weight"], np.float32), np.asarray(arrays["bias"], np.float32))

    def logits(self, features: npt.ArrayLike) -> F32:
        x = _features(features, self.n_features)
        out: F32 = x @ self.weight + self.bias
        return out

    def predict_proba(self, features: npt.ArrayLike) -> F32:
        return _softmax(self.logits(features)).astype(np.float32)

    def evaluate(self, features: npt.ArrayLike, labels: npt.ArrayLike) -> tuple[float, float]:
        """(mean cross-entropy, accuracy) on labelled features."""
        x = _features(features, self.n_features)
        y = _labels(labels, len(x), self.n_classes)
        if len(x) == 0:
            raise DataError("evaluate: no labelled samples")
        p = _softmax(x.astype(np.float64) @ self.weight + self.bias)
        loss = float(-np.mean(np.log(np.maximum(p[np.arange(len(y)), y], 1e-12))))
        return loss, float(np.mean(p.argmax(axis=1) == y))


@dataclass(frozen=True)
class TrainConfig:
    """Local training: ``epochs`` passes of minibatch SGD with momentum over the local samples."""

    epochs: int = 5
    lr: float = 0.1
    batch_size: int = 32
    momentum: float = 0.9
    l2: float = 1e-4
    proximal_mu: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        checks = {
            "epochs": 1 <= self.epochs <= 1000,
            "lr": np.isfinite(self.lr) and 0 < self.lr <= 10,
            "batch_size": 1 <= self.batch_size <= 1 << 16,
            "momentum": np.isfinite(self.momentum) and 0 <= self.momentum < 1,
            "l2": np.isfinite(self.l2) and 0 <= self.l2 <= 10,
            "proximal_mu": np.isfinite(self.proximal_mu) and 0 <= self.proximal_mu <= 100,
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise InputError(f"train config: {bad[0]}={getattr(self, bad[0])!r} out of range "
                             "(epochs 1..1000, 0<lr<=10, batch 1..65536, 0<=momentum<1, "
                             "0<=l2<=10, 0<=proximal_mu<=100)")


@dataclass(frozen=True)
class TrainResult:
    head: Head
    n_samples: int
    loss_before: float
    loss_after: float
    steps: int
    # with ``held_out``: the epoch kept (0: the starting head) and its held-out accuracy
    best_epoch: int | None = None
    held_out_accuracy: float | None = None


def train_head(head: Head, features: npt.ArrayLike, labels: npt.ArrayLike,
               config: TrainConfig | None = None, *,
               held_out: tuple[npt.ArrayLike, npt.ArrayLike] | None = None) -> TrainResult:
    """Train ``head`` on labelled features; the proximal term (FedProx) pulls towards ``head``
    itself, the global model the round started from. Returns the new head.

    With ``held_out`` (features, labels never trained on), the head is scored on them before
    training and after every epoch, and the best one is returned (early stopping: the first of
    equals, so the starting head when no epoch beats it); ``best_epoch`` says which."""
    cfg = config or TrainConfig()
    x = _features(features, head.n_features)
    y = _labels(labels, len(x), head.n_classes)
    if len(x) == 0:
        raise DataError("train: no labelled samples (labels come from delayed feedback)")
    if held_out is not None:
        xv = _features(held_out[0], head.n_features)
        yv = _labels(held_out[1], len(xv), head.n_classes)
        if len(xv) == 0:
            raise DataError("train: the held-out split is empty")
        best = (head.evaluate(xv, yv)[1], 0, head)
    rng = np.random.default_rng(cfg.seed)
    w0, b0 = head.weight.astype(np.float64), head.bias.astype(np.float64)
    w, b = w0.copy(), b0.copy()
    vw, vb = np.zeros_like(w), np.zeros_like(b)
    x64 = x.astype(np.float64)
    onehot = np.eye(head.n_classes)[y]
    loss_before = head.evaluate(x, y)[0]
    steps = 0
    for epoch in range(cfg.epochs):
        order = rng.permutation(len(x))
        for start in range(0, len(x), cfg.batch_size):
            idx = order[start:start + cfg.batch_size]
            xb = x64[idx]
            err = (_softmax(xb @ w + b) - onehot[idx]) / len(idx)
            gw = xb.T @ err + cfg.l2 * w + cfg.proximal_mu * (w - w0)
            gb = err.sum(axis=0) + cfg.proximal_mu * (b - b0)
            vw = cfg.momentum * vw - cfg.lr * gw
            vb = cfg.momentum * vb - cfg.lr * gb
            w += vw
            b += vb
            steps += 1
        if held_out is not None:
            epoch_head = _finite_head(w, b, cfg.lr)
            acc = epoch_head.evaluate(xv, yv)[1]
            if acc > best[0]:
                best = (acc, epoch + 1, epoch_head)
    if held_out is not None:
        new = best[2]
        return TrainResult(new, len(x), loss_before, new.evaluate(x, y)[0], steps,
                           best_epoch=best[1], held_out_accuracy=best[0])
    new = _finite_head(w, b, cfg.lr)
    return TrainResult(new, len(x), loss_before, new.evaluate(x, y)[0], steps)


def _finite_head(w: npt.NDArray[np.float64], b: npt.NDArray[np.float64], lr: float) -> Head:
    with np.errstate(over="ignore"):
        w32, b32 = w.astype(np.float32), b.astype(np.float32)
    if not (np.all(np.isfinite(w32)) and np.all(np.isfinite(b32))):
        raise DataError(f"train: the head diverged (lr={lr}); use a smaller learning rate")
    return Head(w32, b32)


def _softmax(z: npt.NDArray[np.floating]) -> npt.NDArray[np.floating]:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    out: npt.NDArray[np.floating] = e / e.sum(axis=1, keepdims=True)
    return out


def _features(features: npt.ArrayLike, d: int) -> F32:
    x = np.asarray(features, dtype=np.float32)
    if x.ndim != 2 or x.shape[1] != d:
        x = x.reshape(len(x), -1) if x.ndim >= 2 else x
        if x.ndim != 2 or x.shape[1] != d:
            raise DataError(f"features: expected (n, {d}), got shape {np.shape(features)}")
    if not np.all(np.isfinite(x)):
        raise DataError("features: not all finite")
    return x


def _labels(labels: npt.ArrayLike, n: int, k: int) -> npt.NDArray[np.int64]:
    y = np.asarray(labels)
    if y.shape != (n,) or (n and not np.issubdtype(y.dtype, np.integer)):
        raise DataError(f"labels: expected {n} integer class ids, got shape {y.shape} "
                        f"dtype {y.dtype}")
    y = y.astype(np.int64)
    if n and (y.min() < 0 or y.max() >= k):
        raise DataError(f"labels: class ids must be in 0..{k - 1}, got {y.min()}..{y.max()}")
    return y
