"""Evaluation suites: held-out data registered with a model, scored on every version pushed.

A suite is an ``.npz`` (``x``, ``y`` and optionally a segment column such as ``region``) kept in
the blob store by its sha256, with the metric and the budget: the largest drop of the metric,
overall or in any segment, that a candidate may show against the version it replaces.
:func:`score_suite` runs a model on it with ONNX Runtime (``edgeloop.runtime``, no torch);
the scores are ordinary evaluations, ``dataset="suite"`` overall and ``"suite:KEY=VALUE"`` per
segment, tied to the data by ``dataset_sha256``. :func:`suite_regression` compares two
versions' scores on the current suite (pure reads; the fleet calls it in ``rollout start``).
"""

from __future__ import annotations

import io
import math
import zipfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Session

from edgeloop.db import EvalSuiteRow, EvaluationRow, ModelRow, utcnow
from edgeloop.errors import EdgeloopError, RegistryError
from edgeloop.registry._ops import ensure_blob, model_row, utc, version_row
from edgeloop.registry._types import BlobInfo, _ToDict, check_name

__all__ = [
    "SUITE_DATASET",
    "SUITE_METRICS",
    "EvalSuite",
    "Regression",
    "get_suite",
    "record_suite",
    "score_suite",
    "set_suite",
    "suite_regression",
]

SUITE_DATASET = "suite"
SUITE_METRICS = ("accuracy", "macro_f1")
MAX_SEGMENTS = 200  # a segment column with more values is an id, not a segment
_MAX_SEGMENT_CHARS = 100


@dataclass(frozen=True)
class EvalSuite(_ToDict):
    model: str
    data_sha256: str
    segment_key: str | None
    metric: str
    max_drop: float
    updated_at: datetime
    updated_by: str


@dataclass(frozen=True)
class Regression(_ToDict):
    """The worst slice where ``candidate`` scores below ``baseline`` by more than the budget."""

    model: str
    candidate: int
    baseline: int
    slice: str  # "all" or "KEY=VALUE"
    metric: str
    candidate_value: float
    baseline_value: float
    max_drop: float

    @property
    def drop(self) -> float:
        return self.baseline_value - self.candidate_value

    def message(self, baseline_name: str = "") -> str:
        named = f" ({baseline_name})" if baseline_name else ""
        where = "overall" if self.slice == "all" else f"on {self.slice}"
        return (
            f"{self.model}@{self.candidate} regresses against {self.model}@{self.baseline}{named} "
            f"on its evaluation suite: {self.metric} {where} {self.candidate_value:.4f} vs "
            f"{self.baseline_value:.4f}, a drop of {self.drop:.4f} beyond the budget "
            f"{self.max_drop:.4f}"
        )


def _slice_name(dataset: str | None) -> str | None:
    if dataset == SUITE_DATASET:
        return "all"
    prefix = SUITE_DATASET + ":"
    return dataset[len(prefix) :] if dataset and dataset.startswith(prefix) else None


def load_suite_data(
    data: bytes, segment_key: str | None, where: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """``x``, ``y`` and the segment column of a suite file, checked (no pickles)."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise RegistryError(f"evaluation suite {where}: not an .npz file ({e})") from e
    missing = [k for k in ("x", "y", *([segment_key] if segment_key else [])) if k not in arrays]
    if missing:
        raise RegistryError(
            f"evaluation suite {where}: no array {', '.join(map(repr, missing))} "
            f"(it has {', '.join(sorted(arrays)) or 'none'}); expected x, y"
            + (f" and the segment column {segment_key!r}" if segment_key else "")
        )
    x, y = arrays["x"], arrays["y"].reshape(-1)
    if x.ndim == 0 or x.shape[0] != y.shape[0] or y.shape[0] == 0:
        raise RegistryError(
            f"evaluation suite {where}: x has shape {x.shape} and y {y.shape}; expected the "
            "same number of rows (at least one)"
        )
    if not np.issubdtype(y.dtype, np.integer):
        raise RegistryError(f"evaluation suite {where}: y has dtype {y.dtype}; expected integers")
    seg = None
    if segment_key:
        seg = arrays[segment_key].reshape(-1)
        if seg.shape[0] != y.shape[0] or seg.dtype.kind not in "iuUSb":
            raise RegistryError(
                f"evaluation suite {where}: segment column {segment_key!r} has shape "
                f"{seg.shape} and dtype {seg.dtype}; expected {y.shape[0]} integers or strings"
            )
        values = np.unique(seg.astype(str))
        if len(values) > MAX_SEGMENTS or any(len(v) > _MAX_SEGMENT_CHARS for v in values):
            raise RegistryError(
                f"evaluation suite {where}: segment column {segment_key!r} has {len(values)} "
                f"values; expected at most {MAX_SEGMENTS}, each at most {_MAX_SEGMENT_CHARS} "
                "characters"
            )
        seg = seg.astype(str)
    return x, y, seg


def score_suite(
    model: str | Path | bytes, data: bytes, segment_key: str | None, metric: str
) -> dict[str, tuple[float, int]]:
    """``{slice: (metric value, rows)}`` of a model on a suite, ``"all"`` and each segment."""
    from edgeloop.runtime import Session as OrtSession
    from edgeloop.runtime import run_batched, score

    x, y, seg = load_suite_data(data, segment_key, "data")
    try:
        session = OrtSession(model)
        out = run_batched(session, x)[session.output_names[0]]
    except EdgeloopError as e:
        raise RegistryError(f"cannot run the model on its evaluation suite: {e}") from e
    slices: dict[str, np.ndarray] = {"all": np.ones(y.shape[0], dtype=bool)}
    if seg is not None:
        for value in np.unique(seg):
            slices[f"{segment_key}={value}"] = seg == value
    result = {}
    for name, mask in slices.items():
        value = score("classification", y[mask], out[mask])[metric]
        result[name] = (float(value), int(mask.sum()))
    return result


def _suite(row: EvalSuiteRow, name: str) -> EvalSuite:
    return EvalSuite(
        name,
        row.data_sha256,
        row.segment_key,
        row.metric,
        row.max_drop,
        utc(row.updated_at),
        row.updated_by,
    )


def set_suite(
    session: Session,
    name: str,
    blob: BlobInfo,
    *,
    segment_key: str | None,
    metric: str,
    max_drop: float,
    actor: str,
) -> EvalSuite:
    """Register (or replace) ``name``'s evaluation suite; the data blob is stored already."""
    if metric not in SUITE_METRICS:
        raise RegistryError(f"suite metric {metric!r}: expected one of {', '.join(SUITE_METRICS)}")
    if isinstance(max_drop, bool) or not (math.isfinite(max_drop) and 0.0 <= max_drop <= 1.0):
        raise RegistryError(f"suite budget --max-drop {max_drop!r}: expected 0 to 1")
    if segment_key is not None:
        check_name(segment_key, "segment key")
    model = model_row(session, name)
    ensure_blob(session, blob)
    row = session.get(EvalSuiteRow, model.id)
    if row is None:
        row = EvalSuiteRow(model_id=model.id)
        session.add(row)
    row.data_sha256 = blob.sha256
    row.segment_key = segment_key
    row.metric = metric
    row.max_drop = float(max_drop)
    row.updated_at = utcnow()
    row.updated_by = actor
    session.flush()
    return _suite(row, name)


def get_suite(session: Session, name: str) -> EvalSuite | None:
    """The model's suite; None when it has none (or the registry does not know the model)."""
    found = session.execute(
        sa.select(EvalSuiteRow)
        .join(ModelRow, ModelRow.id == EvalSuiteRow.model_id)
        .where(ModelRow.name == name)
    ).scalar_one_or_none()
    return _suite(found, name) if found is not None else None


def record_suite(
    session: Session,
    name: str,
    version: int,
    suite: EvalSuite,
    scores: dict[str, tuple[float, int]],
    actor: str,
) -> None:
    """Store a version's suite scores as evaluations (replacing earlier ones on this data)."""
    _model, row = version_row(session, name, version)
    session.execute(
        sa.delete(EvaluationRow).where(
            EvaluationRow.version_id == row.id,
            EvaluationRow.dataset_sha256 == suite.data_sha256,
            EvaluationRow.metric.in_((suite.metric, "samples")),
        )
    )
    now = utcnow()
    for slice_, (value, rows) in scores.items():
        dataset = SUITE_DATASET if slice_ == "all" else f"{SUITE_DATASET}:{slice_}"
        for metric, v in ((suite.metric, value), ("samples", float(rows))):
            session.add(
                EvaluationRow(
                    version_id=row.id,
                    metric=metric,
                    value=v,
                    dataset=dataset,
                    dataset_sha256=suite.data_sha256,
                    created_at=now,
                    created_by=actor,
                )
            )
    session.flush()


def _scores(session: Session, name: str, version: int, suite: EvalSuite) -> dict[str, float]:
    _model, row = version_row(session, name, version)
    rows = session.execute(
        sa.select(EvaluationRow.dataset, EvaluationRow.value).where(
            EvaluationRow.version_id == row.id,
            EvaluationRow.dataset_sha256 == suite.data_sha256,
            EvaluationRow.metric == suite.metric,
        )
    ).all()
    return {s: float(v) for d, v in rows if (s := _slice_name(d)) is not None}


def suite_regression(
    session: Session, name: str, candidate: int, baseline: int
) -> Regression | None:
    """The worst regression of ``candidate`` against ``baseline`` beyond the budget, or None.

    None also when the model has no suite. A version not scored on the current suite is
    refused with the command that scores it (a rollout is not started on a guess).
    """
    suite = get_suite(session, name)
    if suite is None:
        return None
    got = {}
    for v in (candidate, baseline):
        got[v] = _scores(session, name, v, suite)
        if "all" not in got[v]:
            raise RegistryError(
                f"{name}@{v} has no score on its evaluation suite (data sha256 "
                f"{suite.data_sha256[:16]}); score it first: edgeloop registry suite run {name}@{v}"
            )
    worst: Regression | None = None
    for slice_, base in got[baseline].items():
        cand = got[candidate].get(slice_)
        if cand is None:
            continue
        if base - cand > suite.max_drop + 1e-12 and (worst is None or base - cand > worst.drop):
            worst = Regression(
                name, candidate, baseline, slice_, suite.metric, cand, base, suite.max_drop
            )
    return worst
