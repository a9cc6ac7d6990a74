"""Task metrics in plain numpy, so a device can score a model without scikit-learn."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edgeloop.errors import DataError

__all__ = [
    "accuracy",
    "macro_f1",
    "reconstruction_error",
    "reconstruction_auc",
    "roc_auc",
    "softmax",
]


def _labels(y: Sequence[int] | np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise DataError(f"{name} must be 1-D, got shape {arr.shape}")
    return arr


def accuracy(y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray) -> float:
    t, p = _labels(y_true, "y_true"), _labels(y_pred, "y_pred")
    if t.shape != p.shape:
        raise DataError(f"y_true has {t.shape[0]} labels, y_pred {p.shape[0]}")
    if t.size == 0:
        raise DataError("accuracy of an empty set is undefined")
    return float(np.mean(t == p))


def macro_f1(y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray) -> float:
    """Unweighted mean of per-class F1 over the classes present in either array."""
    t, p = _labels(y_true, "y_true"), _labels(y_pred, "y_pred")
    if t.shape != p.shape:
        raise DataError(f"y_true has {t.shape[0]} labels, y_pred {p.shape[0]}")
    if t.size == 0:
        raise DataError("F1 of an empty set is undefined")
    scores = []
    for c in np.union1d(t, p):
        tp = np.sum((p == c) & (t == c))
        fp = np.sum((p == c) & (t != c))
        fn = np.sum((p != c) & (t == c))
        denom = 2 * tp + fp + fn
        scores.append(2 * tp / denom if denom else 0.0)
    return float(np.mean(scores))


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks with ties sharing their mean rank."""
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x), dtype=np.float64)
    sorted_x = x[order]
    # boundaries of runs of equal values
    starts = np.r_[0, np.flatnonzero(sorted_x[1:] != sorted_x[:-1]) + 1]
    ends = np.r_[starts[1:], len(x)]
    for s, e in zip(starts, ends, strict=True):
        ranks[order[s:e]] = (s + e + 1) / 2.0
    return ranks


def roc_auc(y_true: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray) -> float:
    """Area under the ROC curve by the rank-sum (Mann-Whitney U) formula; label 1 is positive."""
    t = _labels(y_true, "y_true").astype(np.int64)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if s.shape[0] != t.shape[0]:
        raise DataError(f"y_true has {t.shape[0]} labels, scores {s.shape[0]}")
    if not set(np.unique(t)) <= {0, 1}:
        raise DataError(f"ROC AUC needs binary labels 0/1, got {sorted(np.unique(t))[:5]}")
    n_pos = int(t.sum())
    n_neg = t.size - n_pos
    if n_pos == 0 or n_neg == 0:
        raise DataError("ROC AUC needs both positive and negative examples")
    ranks = _average_ranks(s)
    u = ranks[t == 1].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    z = logits - np.max(logits, axis=axis, keepdims=True)
    e = np.exp(z)
    out: np.ndarray = e / np.sum(e, axis=axis, keepdims=True)
    return out


def reconstruction_error(x: np.ndarray, x_hat: np.ndarray) -> np.ndarray:
    """Mean squared error per sample (over every axis but the first)."""
    a = np.asarray(x, dtype=np.float64)
    b = np.asarray(x_hat, dtype=np.float64)
    if a.shape != b.shape:
        raise DataError(f"reconstruction has shape {b.shape}, input {a.shape}")
    err: np.ndarray = np.mean((a - b).reshape(a.shape[0], -1) ** 2, axis=1)
    return err


def reconstruction_auc(
    y_true: Sequence[int] | np.ndarray, x: np.ndarray, x_hat: np.ndarray
) -> float:
    """ROC AUC of reconstruction error as the anomaly score (label 1 = anomaly)."""
    return roc_auc(y_true, reconstruction_error(x, x_hat))
