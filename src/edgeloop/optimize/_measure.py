"""Measure a candidate model against the original: metric, per-sample similarity, latency.

The :class:`Evaluator` runs the original (fp32) model once on the evaluation samples and keeps
its outputs; every candidate is then compared with them sample by sample (cosine similarity and
SQNR in dB over all float outputs), scored on the labelled metric when the data has labels, and
timed at batch 1 on one thread. A :class:`Budget` says whether a candidate is good enough and by
how much it misses.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeloop.errors import EdgeloopError, InputError, ModelError, UnknownNameError
from edgeloop.optimize._data import ModelData
from edgeloop.runtime import Session

__all__ = ["METRICS", "Budget", "Evaluator", "Quality", "make_session", "retrieval_agreement"]

# retrieval: no labels; the share of samples whose nearest neighbour is the one fp32 finds
METRICS = ("accuracy", "auc", "retrieval")


def make_session(path: str | Path, threads: int = 1) -> Session:
    """A CPU session on ``threads`` intra-op threads (the runtime's, as a device runs it)."""
    try:
        return Session(path, threads=threads, providers=["CPUExecutionProvider"])
    except ModelError:
        raise
    except EdgeloopError as e:  # a missing file, ...
        raise ModelError(f"ONNX Runtime cannot load {str(path)!r}: {e}") from e


@dataclass
class Quality:
    """How a model did on the evaluation samples."""

    metric: float | None = None
    metric_name: str | None = None
    cosine_min: float | None = None
    cosine_mean: float | None = None
    sqnr_min_db: float | None = None
    sqnr_mean_db: float | None = None
    latency_ms_p50: float | None = None
    samples: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Budget:
    """The loss of quality the user accepts: metric drop, or floors on per-sample similarity."""

    max_drop: float | None = None
    min_cosine: float | None = None
    min_sqnr: float | None = None

    def __bool__(self) -> bool:
        return any(v is not None for v in (self.max_drop, self.min_cosine, self.min_sqnr))

    def shortfall(self, q: Quality, base: Quality) -> dict[str, float]:
        """Each unmet constraint -> how far it misses (0 entries are not listed)."""
        miss: dict[str, float] = {}
        if self.max_drop is not None:
            if q.metric is None or base.metric is None:
                raise InputError(
                    "max_drop needs a labelled metric, but the data has no labels; "
                    "use min_cosine or min_sqnr for unlabelled data"
                )
            drop = base.metric - q.metric
            if drop > self.max_drop + 1e-12:
                miss["max_drop"] = drop - self.max_drop
        if self.min_cosine is not None and (q.cosine_min or 0.0) < self.min_cosine:
            miss["min_cosine"] = self.min_cosine - (q.cosine_min or 0.0)
        if self.min_sqnr is not None and (q.sqnr_min_db or -math.inf) < self.min_sqnr:
            miss["min_sqnr"] = self.min_sqnr - (q.sqnr_min_db if q.sqnr_min_db is not None else 0)
        return miss

    def describe(self, miss: dict[str, float]) -> str:
        parts = {
            "max_drop": f"metric dropped {miss.get('max_drop', 0) + (self.max_drop or 0):.4f} "
            f"(budget {self.max_drop}, missed by {miss.get('max_drop', 0):.4f})",
            "min_cosine": f"min cosine {(self.min_cosine or 0) - miss.get('min_cosine', 0):.5f} "
            f"< {self.min_cosine} (missed by {miss.get('min_cosine', 0):.5f})",
            "min_sqnr": f"min SQNR {(self.min_sqnr or 0) - miss.get('min_sqnr', 0):.2f} dB "
            f"< {self.min_sqnr} dB (missed by {miss.get('min_sqnr', 0):.2f} dB)",
        }
        return "; ".join(parts[k] for k in miss)


def _flat_float(outputs: list[np.ndarray], n: int) -> np.ndarray:
    parts = [o.reshape(n, -1).astype(np.float64) for o in outputs if o.dtype.kind == "f"]
    if not parts:
        parts = [o.reshape(n, -1).astype(np.float64) for o in outputs]
    return np.concatenate(parts, axis=1)


def retrieval_agreement(reference: np.ndarray, outputs: np.ndarray) -> float:
    """Top-1 nearest-neighbour agreement: for each sample, is its most similar other sample
    (cosine over the flattened outputs) the same under ``outputs`` as under ``reference``?

    The task metric of an embedding model (semantic search returns the nearest sentence): 1.0
    when every lookup over the evaluation set returns what fp32 returns.
    """
    n = len(reference)
    if n < 2:
        raise InputError("retrieval agreement needs at least 2 evaluation samples")

    def nearest(e: np.ndarray) -> np.ndarray:
        e = e.reshape(n, -1).astype(np.float64)
        e = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-30)
        sim = e @ e.T
        np.fill_diagonal(sim, -np.inf)
        return np.asarray(sim.argmax(axis=1))

    return float((nearest(reference) == nearest(outputs)).mean())


def _auc(scores: np.ndarray, labels: np.ndarray) -> float:
    pos, neg = scores[labels == 1], scores[labels == 0]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    ranks = np.argsort(np.argsort(np.concatenate([pos, neg]))) + 1
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


class Evaluator:
    """Scores candidates against the reference outputs of the original model."""

    def __init__(
        self,
        reference: str | Path,
        data: ModelData,
        *,
        metric: str | None = None,
        threads: int = 1,
        latency_runs: int = 30,
    ) -> None:
        self.data = data
        self.threads = threads
        self.latency_runs = latency_runs
        if metric is not None and metric not in METRICS:
            raise UnknownNameError(f"unknown metric {metric!r}; expected one of {METRICS}")
        if metric is None and data.labels is not None:
            metric = "auc" if data.task == "anomaly" else "accuracy"
        if metric is not None and metric != "retrieval" and data.labels is None:
            raise InputError(f"metric {metric!r} needs labels, but data {data.name!r} has none")
        self.metric = metric
        self.reference = self.run(reference)

    def run(
        self, path: str | Path, inputs: dict[str, np.ndarray] | None = None
    ) -> list[np.ndarray]:
        sess = make_session(path, self.threads)
        feeds = self.data.inputs if inputs is None else inputs
        n = len(next(iter(feeds.values())))
        batch = self._batch_size(sess, n)
        chunks: list[list[np.ndarray]] = []
        try:
            for start in range(0, n, batch):
                out = sess.run_unchecked({k: v[start : start + batch] for k, v in feeds.items()})
                chunks.append(list(out.values()))
        except Exception as e:
            raise ModelError(f"running {str(path)!r} on data {self.data.name!r} failed: {e}") from e
        return [np.concatenate([c[i] for c in chunks]) for i in range(len(chunks[0]))]

    @staticmethod
    def _batch_size(sess: Session, n: int) -> int:
        dims = [i.shape[0] if i.shape else None for i in sess.inputs]
        fixed = [d for d in dims if isinstance(d, int) and d > 0]
        return fixed[0] if fixed else min(n, 64)

    def latency_ms(self, path: str | Path) -> float:
        sess = make_session(path, self.threads)
        fixed = self._batch_size(sess, 1)
        feeds = {k: np.ascontiguousarray(v[:fixed]) for k, v in self.data.inputs.items()}
        for _ in range(3):
            sess.run_unchecked(feeds)
        times: list[float] = []
        deadline = time.perf_counter() + 5.0
        while len(times) < self.latency_runs and (len(times) < 5 or time.perf_counter() < deadline):
            t0 = time.perf_counter()
            sess.run_unchecked(feeds)
            times.append((time.perf_counter() - t0) * 1e3)
        return float(np.median(times))

    def latencies(
        self,
        paths: list[Path],
        *,
        rounds: int = 21,
        runs: int = 5,
        warmup: int = 10,
        max_seconds: float = 30.0,
    ) -> list[float]:
        """Median ms per run of each model at batch 1, timed in interleaved rounds.

        Timing each model on its own at a different moment (as each step finished) let
        background load, CPU frequency and cache state decide the ratio: a step reported
        1.43x faster measured 0.90x when timed alongside the original. Here every round runs
        each model ``runs`` times, in alternating order, so drift hits all of them alike;
        medians over at least 5 rounds (more while ``max_seconds`` allows).
        """
        sessions = [make_session(p, self.threads) for p in paths]
        feeds = []
        for sess in sessions:
            fixed = self._batch_size(sess, 1)
            feeds.append({k: np.ascontiguousarray(v[:fixed]) for k, v in self.data.inputs.items()})
        for sess, f in zip(sessions, feeds, strict=True):
            for _ in range(warmup):
                sess.run_unchecked(f)
        times: list[list[float]] = [[] for _ in sessions]
        deadline = time.perf_counter() + max_seconds
        for r in range(rounds):
            order = range(len(sessions)) if r % 2 == 0 else reversed(range(len(sessions)))
            for i in order:
                for _ in range(runs):
                    t0 = time.perf_counter()
                    sessions[i].run_unchecked(feeds[i])
                    times[i].append((time.perf_counter() - t0) * 1e3)
            if r >= 4 and time.perf_counter() > deadline:
                break
        return [float(np.median(t)) for t in times]

    def score(self, path: str | Path, *, latency: bool = True, limit: int | None = None) -> Quality:
        """Quality of ``path``: on every sample, or the first ``limit`` (sensitivity scans)."""
        feeds = self.data.inputs if limit is None else self.data.sample(limit)
        out = self.run(path, feeds)
        n = len(out[0])
        ref = _flat_float([r[:n] for r in self.reference], n)
        got = _flat_float(out, n)
        dot = (ref * got).sum(1)
        norms = np.linalg.norm(ref, axis=1) * np.linalg.norm(got, axis=1)
        cos = np.where(norms > 0, dot / np.maximum(norms, 1e-30), 1.0)
        noise = ((ref - got) ** 2).sum(1)
        signal = (ref**2).sum(1)
        sqnr = 10 * np.log10(np.maximum(signal, 1e-30) / np.maximum(noise, 1e-30))
        q = Quality(
            cosine_min=float(cos.min()),
            cosine_mean=float(cos.mean()),
            sqnr_min_db=float(sqnr.min()),
            sqnr_mean_db=float(sqnr.mean()),
            samples=n,
        )
        if self.metric == "retrieval":
            q.metric_name = self.metric
            q.metric = retrieval_agreement(ref, got)
        elif self.metric is not None and self.data.labels is not None:
            q.metric_name = self.metric
            q.metric = self._metric(out, self.data.labels[:n], feeds)
        if latency:
            q.latency_ms_p50 = self.latency_ms(path)
        return q

    def _metric(self, out: list[np.ndarray], y: np.ndarray, feeds: dict[str, np.ndarray]) -> float:
        first = out[0]
        if self.metric == "accuracy":
            pred = first.argmax(axis=-1) if first.ndim > 1 and first.shape[-1] > 1 else first > 0.5
            return float((pred.reshape(-1) == y.reshape(-1)).mean())
        x = next(iter(feeds.values()))
        if first.shape == x.shape:  # an autoencoder: the reconstruction error is the score
            scores = ((first - x) ** 2).reshape(len(x), -1).mean(1)
        else:
            scores = first.reshape(len(first), -1)[:, -1]
        return _auc(scores, y.reshape(-1))
