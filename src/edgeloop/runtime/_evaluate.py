"""Run a model over a whole dataset in batches and score it for its task."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from edgeloop.errors import DataError, InputError, ModelInputError
from edgeloop.runtime import metrics
from edgeloop.runtime._session import Session

__all__ = ["TASKS", "as_feeds", "evaluate", "run_batched", "score"]

TASKS = ("classification", "anomaly")


def as_feeds(session: Session, x: Any) -> dict[str, np.ndarray]:
    """A dataset's ``x`` (one array, or a mapping by input name) as named feeds."""
    if isinstance(x, Mapping):
        return {str(k): np.asarray(v) for k, v in x.items()}
    if len(session.inputs) != 1:
        raise ModelInputError(
            f"the model has {len(session.inputs)} inputs ({', '.join(session.input_names)}); "
            "the data must give one array per input name"
        )
    return {session.inputs[0].name: np.asarray(x)}


def run_batched(session: Session, x: Any, batch_size: int = 256) -> dict[str, np.ndarray]:
    """Run every row of ``x`` through the model, ``batch_size`` rows at a time."""
    if batch_size < 1:
        raise InputError(f"batch size must be positive, got {batch_size}")
    feeds = as_feeds(session, x)
    lengths = {name: (arr.shape[0] if arr.ndim else 1) for name, arr in feeds.items()}
    if len(set(lengths.values())) > 1:
        raise ModelInputError(f"inputs have different numbers of rows: {lengths}")
    n = next(iter(lengths.values()), 0)
    if n == 0:
        raise DataError("no rows to run")
    for spec in session.inputs:  # a model exported with a fixed batch takes exactly that many
        if spec.shape and isinstance(spec.shape[0], int) and spec.shape[0] > 0:
            batch_size = spec.shape[0]
            break
    parts: dict[str, list[np.ndarray]] = {}
    for start in range(0, n, batch_size):
        out = session.run({k: v[start : start + batch_size] for k, v in feeds.items()})
        for k, v in out.items():
            parts.setdefault(k, []).append(v)
    return {k: np.concatenate(v, axis=0) if v[0].ndim else v[-1] for k, v in parts.items()}


def _binary_predictions(scores: np.ndarray) -> np.ndarray:
    threshold = 0.5 if scores.min() >= 0.0 and scores.max() <= 1.0 else 0.0
    return (scores > threshold).astype(np.int64)


def score(task: str, y: np.ndarray | None, out: np.ndarray, x: Any = None) -> dict[str, float]:
    """Metrics for one output tensor: accuracy/F1/AUC for classification, AUC for anomaly."""
    if task not in TASKS:
        raise InputError(f"task {task!r} is not one of {', '.join(TASKS)}")
    if y is None:
        raise DataError(f"evaluating a {task} model needs labels (y); the data has none")
    y = np.asarray(y).reshape(-1)
    if out.shape[0] != y.shape[0]:
        raise DataError(f"the model gave {out.shape[0]} rows of output for {y.shape[0]} labels")
    result: dict[str, float] = {"samples": float(y.shape[0])}
    if task == "anomaly":
        if isinstance(x, np.ndarray) and out.shape == x.shape:
            err = metrics.reconstruction_error(x, out)
        else:
            err = out.reshape(out.shape[0], -1).mean(axis=1)
        result["roc_auc"] = metrics.roc_auc(y, err)
        result["score_mean"] = float(err.mean())
        return result
    flat = out.reshape(out.shape[0], -1)
    if flat.shape[1] > 1:
        pred = np.argmax(flat, axis=1)
        result["accuracy"] = metrics.accuracy(y, pred)
        result["macro_f1"] = metrics.macro_f1(y, pred)
        if flat.shape[1] == 2 and len(np.unique(y)) == 2:
            result["roc_auc"] = metrics.roc_auc(y, metrics.softmax(flat.astype(np.float64))[:, 1])
    else:
        s = flat[:, 0].astype(np.float64)
        pred = _binary_predictions(s)
        result["accuracy"] = metrics.accuracy(y, pred)
        result["macro_f1"] = metrics.macro_f1(y, pred)
        if len(np.unique(y)) == 2:
            result["roc_auc"] = metrics.roc_auc(y, s)
    return result


def evaluate(
    model: Session | str | Path | bytes,
    x: Any,
    y: np.ndarray | None,
    task: str = "classification",
    *,
    batch_size: int = 256,
    threads: int | None = None,
    output: str | None = None,
) -> dict[str, float]:
    """Score a model on labelled data.

    ``task="classification"``: the first output (or ``output``) holds class scores, one column
    per class (or a single score for a binary task): accuracy, macro-F1, and ROC AUC when there
    are two classes. ``task="anomaly"``: label 1 marks an anomaly; an output the shape of the
    input is a reconstruction whose mean squared error is the score, any other output is the
    score itself: ROC AUC.
    """
    session = model if isinstance(model, Session) else Session(model, threads=threads)
    outs = run_batched(session, x, batch_size)
    name = output or session.output_names[0]
    if name not in outs:
        raise InputError(f"output {name!r} is not one of {', '.join(outs)}")
    return score(task, y, outs[name], x)
