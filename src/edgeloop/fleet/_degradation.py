"""Degradation: latency, error and self-test trends per version and cohort, from telemetry.

A pure core (:func:`degradation_trends`: report values in, trends out) and the database read at
the edge (:func:`degradation`). Reports are bucketed by when they arrived (``bucket_s``); per
bucket the error rate is pooled (errors over requests), the latency is the median over the
bucket's reports of each report's p99 (a median, so one device cannot move it) and self-test
failures are summed. A trend compares the last bucket with the first: the error rate is worse
when a two-proportion z-test says so (z >= 3, one-sided) and it grew by at least 0.005; the
latency is worse when the median p99 grew by at least 20 %; self-tests when any failed in the
last bucket.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from edgeloop.db import DeviceRow, ReportRow

__all__ = ["TelemetryPoint", "degradation", "degradation_trends"]

ALL = "*"
MAX_COHORT_VALUES = 50  # as monitoring cohorts: a label with more values is an id
Z_WORSE = 3.0
MIN_ERROR_RISE = 0.005
P99_WORSE_RATIO = 1.2
_IGNORED_LABELS = frozenset({"device_id"})


@dataclass(frozen=True)
class TelemetryPoint:
    at: float  # unix seconds the server received the report
    version: int
    labels: Mapping[str, str]
    metrics: Mapping[str, Any]


def _num(metrics: Mapping[str, Any], key: str) -> float | None:
    v = metrics.get(key)
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v < 0:
        return None  # stored reports were validated; a malformed one is skipped, not trusted
    return float(v)


def _median(values: list[float]) -> float | None:
    if not values:
        return None
    s = sorted(values)
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2


def _bucket(points: list[TelemetryPoint], start: float) -> dict[str, Any]:
    requests = errors = selftest = 0.0
    p99: list[float] = []
    for p in points:
        req, err = _num(p.metrics, "requests"), _num(p.metrics, "errors")
        if req is not None and err is not None and err <= req:
            requests, errors = requests + req, errors + err
        if (lat := _num(p.metrics, "p99_ms")) is not None:
            p99.append(lat)
        selftest += _num(p.metrics, "selftest_failures") or 0.0
    return {
        "start": start,
        "reports": len(points),
        "requests": requests,
        "errors": errors,
        "error_rate": errors / requests if requests else None,
        "p99_ms": _median(p99),
        "selftest_failures": selftest,
    }


def _z_worse(first: dict[str, Any], last: dict[str, Any]) -> float:
    """One-sided two-proportion z of the last bucket's error rate above the first's."""
    n1, n2 = first["requests"], last["requests"]
    if not n1 or not n2:
        return 0.0
    pooled = (first["errors"] + last["errors"]) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    diff = last["errors"] / n2 - first["errors"] / n1
    return diff / se if se > 0 else 0.0


def _trend(buckets: list[dict[str, Any]]) -> dict[str, Any]:
    first, last = buckets[0], buckets[-1]
    z = _z_worse(first, last)
    rise = (last["error_rate"] or 0.0) - (first["error_rate"] or 0.0)
    ratio = (
        last["p99_ms"] / first["p99_ms"] if first["p99_ms"] and last["p99_ms"] is not None else None
    )
    worse = []
    if len(buckets) > 1 and z >= Z_WORSE and rise >= MIN_ERROR_RISE:
        worse.append("error_rate")
    if len(buckets) > 1 and ratio is not None and ratio >= P99_WORSE_RATIO:
        worse.append("p99_ms")
    if last["selftest_failures"] > 0:
        worse.append("selftest")
    return {
        "error_rate_change": rise,
        "error_rate_z": z,
        "p99_ratio": ratio,
        "selftest_failures": sum(b["selftest_failures"] for b in buckets),
        "degrading": worse,
    }


def _cohorts(points: Iterable[TelemetryPoint]) -> dict[str, list[TelemetryPoint]]:
    out: dict[str, list[TelemetryPoint]] = defaultdict(list)
    by_label: dict[str, dict[str, list[TelemetryPoint]]] = defaultdict(lambda: defaultdict(list))
    for p in points:
        out[ALL].append(p)
        for k, v in p.labels.items():
            if k not in _IGNORED_LABELS:
                by_label[k][str(v)].append(p)
    for label, values in sorted(by_label.items()):
        if len(values) <= MAX_COHORT_VALUES:
            for value, group in sorted(values.items()):
                out[f"{label}={value}"] = group
    return out


def degradation_trends(
    points: Iterable[TelemetryPoint], *, start: float, bucket_s: float
) -> list[dict[str, Any]]:
    """Per version and cohort: the buckets since ``start`` that have reports, and the trend."""
    by_version: dict[int, list[TelemetryPoint]] = defaultdict(list)
    for p in points:
        if p.at >= start:
            by_version[p.version].append(p)
    out = []
    for version, pts in sorted(by_version.items()):
        for cohort, group in _cohorts(pts).items():
            slots: dict[int, list[TelemetryPoint]] = defaultdict(list)
            for p in group:
                slots[int((p.at - start) // bucket_s)].append(p)
            buckets = [_bucket(slots[i], start + i * bucket_s) for i in sorted(slots)]
            out.append(
                {"version": version, "cohort": cohort, "buckets": buckets, **_trend(buckets)}
            )
    return out


def degradation(
    s: Session,
    model: str,
    version: int | None,
    now: datetime,
    *,
    since_s: float,
    bucket_s: float,
) -> list[dict[str, Any]]:
    """:func:`degradation_trends` of ``model`` (one version or all) over the last ``since_s``."""
    since = now - timedelta(seconds=since_s)
    stmt = (
        sa.select(ReportRow.received_at, ReportRow.version, ReportRow.metrics, DeviceRow.labels)
        .join(DeviceRow, DeviceRow.id == ReportRow.device_id)
        .where(
            ReportRow.model == model, ReportRow.received_at >= since, ReportRow.version.is_not(None)
        )
    )
    if version is not None:
        stmt = stmt.where(ReportRow.version == version)
    points = [
        TelemetryPoint(_unix(at), int(v), dict(labels or {}), dict(metrics or {}))
        for at, v, metrics, labels in s.execute(stmt)
    ]
    rows = degradation_trends(points, start=_unix(since), bucket_s=bucket_s)
    return [{"model": model, **r} for r in rows]


def _unix(when: datetime) -> float:
    from datetime import timezone

    return (when if when.tzinfo else when.replace(tzinfo=timezone.utc)).timestamp()
