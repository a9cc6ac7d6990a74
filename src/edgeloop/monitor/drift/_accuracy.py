"""Accuracy without labels (CBPE), with labels (delayed feedback), and per segment. Pure.

The estimate is the mean calibrated probability of being right over the window; its variance
has two parts: the window's own sampling (a sum of Bernoulli(p_i): ``sum p_i (1 - p_i)``) and
the calibration's (each confidence bin's accuracy was estimated from ``counts_b`` reference
samples, weighted by the window's share of that bin). Realized accuracy gets a Wilson interval.
Bias compares segments (device label values): each metric's largest gap between two
segments, with a normal interval for the difference.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from edgeloop.errors import SketchError
from edgeloop.monitor.drift._merge import DeviceSketch, MergedSketch, merge_sketches

__all__ = [
    "Estimate",
    "SegmentGap",
    "estimated_accuracy",
    "positive_rate",
    "realized_accuracy",
    "segment_bias",
    "wilson",
]

Z95 = 1.959963984540054


@dataclass(frozen=True)
class Estimate:
    value: float
    low: float
    high: float
    n: float

    @property
    def se(self) -> float:
        return (self.high - self.low) / (2 * Z95)

    def as_dict(self) -> dict[str, float]:
        return {"value": self.value, "low": self.low, "high": self.high, "n": self.n}


def wilson(successes: float, n: float, z: float = Z95) -> Estimate | None:
    if n <= 0:
        return None
    p = min(max(successes / n, 0.0), 1.0)
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return Estimate(p, max(0.0, centre - half), min(1.0, centre + half), n)


def estimated_accuracy(m: MergedSketch, z: float = Z95) -> Estimate | None:
    """CBPE: expected top-1 accuracy from calibrated confidences; None without calibration."""
    cal = m.reference.calibration
    if cal is None or m.n_outputs <= 0:
        return None
    n = m.n_outputs
    est = m.exp_correct / n
    sampling = max(m.exp_correct - m.exp_correct_sq, 0.0) / (n * n)
    share = m.conf_hist / n
    acc = cal.accuracy
    per_bin = acc * (1 - acc) / (cal.counts + 2.0)
    calibration = float(np.sum(share * share * per_bin))
    half = z * math.sqrt(sampling + calibration)
    return Estimate(est, max(0.0, est - half), min(1.0, est + half), n)


def realized_accuracy(m: MergedSketch) -> Estimate | None:
    return wilson(m.fb_correct, m.fb_n)


def positive_rate(m: MergedSketch, positive: int) -> Estimate | None:
    if not 0 <= positive < len(m.pred):
        raise SketchError(f"positive class {positive} not in 0..{len(m.pred) - 1}")
    return wilson(float(m.pred[positive]), m.n_outputs)


@dataclass(frozen=True)
class SegmentGap:
    """The largest gap of one metric between two segments, with a 95 % interval."""

    metric: str
    high_segment: str
    low_segment: str
    gap: float
    low: float
    high: float

    def as_dict(self) -> dict[str, float | str]:
        return dict(self.__dict__)


def segment_bias(
    items: Sequence[DeviceSketch],
    label: str,
    *,
    positive: int | None = None,
    cap: float = 3.0,
    min_n: float = 30.0,
) -> tuple[dict[str, dict[str, dict[str, float]]], list[SegmentGap]]:
    """Per value of device label ``label``: estimated and realized accuracy and the positive
    prediction rate; and per metric the largest gap between two segments with enough rows.
    Devices without the label are left out."""
    by: dict[str, list[DeviceSketch]] = {}
    for it in items:
        value = it.labels.get(label)
        if value is not None:
            by.setdefault(value, []).append(it)
    segments: dict[str, dict[str, Estimate]] = {}
    for value, group in sorted(by.items()):
        m = merge_sketches(group, cap=cap)
        metrics: dict[str, Estimate | None] = {
            "est_accuracy": estimated_accuracy(m),
            "realized_accuracy": realized_accuracy(m),
            "positive_rate": None if positive is None else positive_rate(m, positive),
        }
        segments[value] = {k: v for k, v in metrics.items() if v is not None}
    gaps = [
        g
        for g in (
            _largest_gap(segments, k, min_n)
            for k in ("est_accuracy", "realized_accuracy", "positive_rate")
        )
        if g
    ]
    table = {s: {k: e.as_dict() for k, e in v.items()} for s, v in segments.items()}
    return table, gaps


def _largest_gap(
    segments: Mapping[str, Mapping[str, Estimate]], metric: str, min_n: float
) -> SegmentGap | None:
    have = {s: v[metric] for s, v in segments.items() if metric in v and v[metric].n >= min_n}
    if len(have) < 2:
        return None
    hi = max(have, key=lambda s: have[s].value)
    lo = min(have, key=lambda s: have[s].value)
    gap = have[hi].value - have[lo].value
    half = Z95 * math.sqrt(have[hi].se ** 2 + have[lo].se ** 2)
    return SegmentGap(metric, hi, lo, gap, gap - half, gap + half)
