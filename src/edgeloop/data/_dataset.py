"""The :class:`Dataset` value every loader returns, and the helpers that split and hash it."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, TypeAlias

import numpy as np

from edgeloop.errors import DataError

__all__ = ["SPLITS", "TASKS", "Dataset", "Inputs", "content_sha256", "split_indices"]

#: Inputs of a dataset: one array, or one array per model input (name -> array).
Inputs: TypeAlias = np.ndarray | dict[str, np.ndarray]

TASKS = ("classification", "anomaly")
SPLITS = ("train", "val", "test")


def content_sha256(x: Inputs, y: np.ndarray | None, classes: tuple[str, ...]) -> str:
    """A hash of the arrays' names, dtypes, shapes and bytes, plus the labels and class names."""
    h = hashlib.sha256()
    arrays = x if isinstance(x, dict) else {"input": x}
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}\n".encode())
        h.update(a.tobytes())
    if y is not None:
        yy = np.ascontiguousarray(y)
        h.update(f"y|{yy.dtype.str}|{yy.shape}\n".encode())
        h.update(yy.tobytes())
    h.update(("classes|" + "\x1f".join(classes)).encode())
    return h.hexdigest()


def split_indices(
    n: int,
    seed: int,
    fractions: tuple[float, float, float] = (0.7, 0.1, 0.2),
    labels: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Deterministic train/val/test indices; stratified by ``labels`` when given."""
    rng = np.random.default_rng(seed)
    groups = (
        [np.arange(n)]
        if labels is None
        else [np.flatnonzero(labels == c) for c in np.unique(labels)]
    )
    out: dict[str, list[np.ndarray]] = {s: [] for s in SPLITS}
    for idx in groups:
        idx = rng.permutation(idx)
        n_train = int(round(len(idx) * fractions[0]))
        n_val = int(round(len(idx) * fractions[1]))
        out["train"].append(idx[:n_train])
        out["val"].append(idx[n_train : n_train + n_val])
        out["test"].append(idx[n_train + n_val :])
    # shuffle within each split so classes are interleaved (subset(n) stays balanced)
    return {s: rng.permutation(np.concatenate(v)).astype(np.int64) for s, v in out.items()}


@dataclass(frozen=True)
class Dataset:
    """A split of a dataset, in memory.

    ``x`` is one float32 array ``(N, ...)`` or, for multi-input tasks, a dict of arrays in the
    model's input order (e.g. int64 ``input_ids`` and ``attention_mask``). ``y`` holds int64
    class indices (for ``anomaly``: 0 normal, 1 anomaly), or None for unlabelled data.
    ``sha256`` is a content hash (computed when left empty) used for lineage.
    """

    name: str
    task: str
    x: Inputs
    y: np.ndarray | None
    classes: tuple[str, ...]
    split: str
    sha256: str = ""
    input_names: tuple[str, ...] = ()
    meta: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise DataError(
                f"dataset {self.name!r}: task must be one of {TASKS}, got {self.task!r}"
            )
        arrays = self.inputs
        if not arrays:
            raise DataError(f"dataset {self.name!r}: no input arrays")
        lengths = {k: len(v) for k, v in arrays.items()}
        n = next(iter(lengths.values()))
        if any(v != n for v in lengths.values()):
            raise DataError(f"dataset {self.name!r}: inputs differ in length: {lengths}")
        if self.y is not None and len(self.y) != n:
            raise DataError(
                f"dataset {self.name!r}: {len(self.y)} labels for {n} samples; expected equal"
            )
        if not self.input_names:
            object.__setattr__(self, "input_names", tuple(arrays))
        if not self.sha256:
            object.__setattr__(self, "sha256", content_sha256(self.x, self.y, self.classes))

    @property
    def inputs(self) -> dict[str, np.ndarray]:
        """The inputs as a dict name -> array, single-input datasets included (name ``input``)."""
        if isinstance(self.x, dict):
            return dict(self.x)
        return {self.input_names[0] if self.input_names else "input": self.x}

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(next(iter(self.inputs.values())))

    def batches(self, batch_size: int) -> Iterator[tuple[Inputs, np.ndarray | None]]:
        """Yield ``(x_batch, y_batch)`` in order; batches are views, nothing is copied."""
        if batch_size < 1:
            raise DataError(f"batch_size must be >= 1, got {batch_size}")
        for start in range(0, len(self), batch_size):
            sl = slice(start, start + batch_size)
            xb: Inputs = (
                {k: v[sl] for k, v in self.x.items()} if isinstance(self.x, dict) else self.x[sl]
            )
            yield xb, (None if self.y is None else self.y[sl])

    def take(self, index: np.ndarray | slice) -> Dataset:
        """A new dataset of the rows at ``index`` (hash recomputed)."""
        x: Inputs = (
            {k: v[index] for k, v in self.x.items()} if isinstance(self.x, dict) else self.x[index]
        )
        y = None if self.y is None else self.y[index]
        return replace(self, x=x, y=y, sha256="")

    def subset(self, n: int) -> Dataset:
        """The first ``n`` samples (splits are shuffled, so this is a random-looking sample)."""
        if n < 1:
            raise DataError(f"subset size must be >= 1, got {n}")
        return self.take(slice(0, min(n, len(self))))

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Per-input shape without the batch axis."""
        return {k: tuple(int(d) for d in v.shape[1:]) for k, v in self.inputs.items()}

    def dtypes(self) -> dict[str, str]:
        return {k: str(v.dtype) for k, v in self.inputs.items()}

    def __repr__(self) -> str:
        shapes = ", ".join(f"{k}{list(s)}:{self.dtypes()[k]}" for k, s in self.shapes().items())
        return (
            f"Dataset(name={self.name!r}, split={self.split!r}, task={self.task!r}, n={len(self)}, "
            f"inputs=[{shapes}], classes={len(self.classes)}, sha256={self.sha256[:12]})"
        )
