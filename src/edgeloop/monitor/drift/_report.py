"""One drift report for one version over a group of devices and one window. Pure.

Inputs are validated :class:`DeviceSketch` values and the version's reference; the output is a
:class:`~edgeloop.artifacts.DriftReport`, and :func:`report_metrics` turns it into the flat
metrics rollout gates read (``drift_psi_max<0.2``, ``est_accuracy>=baseline-0.02``).

Data quality comes first: a feature a device reports as NaN/inf, out of range or stuck on that
device is a broken sensor, not drift, so its drift test leaves that device out (and says so).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from edgeloop.artifacts import DriftReport
from edgeloop.monitor.drift._accuracy import estimated_accuracy, realized_accuracy, segment_bias
from edgeloop.monitor.drift._merge import DeviceSketch, MergedSketch, merge_sketches
from edgeloop.monitor.drift._stats import (
    DriftOptions,
    accuracy_drop_test,
    benjamini_hochberg,
    compare_counts,
    mean_shift_test,
)
from edgeloop.monitor.sketch import FeatureReference

__all__ = ["data_quality", "drift_report", "report_metrics"]


def _centers(ft: FeatureReference) -> np.ndarray | None:
    e = ft.edges
    if len(e) == 0:
        return None
    if len(e) == 1:
        c = np.array([e[0] - ft.std / 2, e[0] + ft.std / 2])
    else:
        mid = (e[1:] + e[:-1]) / 2
        c = np.concatenate([[e[0] - (e[1] - e[0]) / 2], mid, [e[-1] + (e[-1] - e[-2]) / 2]])
    return c / ft.std  # type: ignore[no-any-return]


def data_quality(
    m: MergedSketch,
    *,
    max_bad_rate: float = 0.01,
    max_out_of_range: float = 0.02,
    stuck_min: float = 20.0,
) -> dict[str, dict[str, float]]:
    """Features with a quality issue: non-finite or out-of-range rates above the bounds, or a
    feature stuck at one value (constant, or repeating its previous value in >= 95 % of rows)
    that the reference shows is not naturally constant."""
    out: dict[str, dict[str, float]] = {}
    c = m.counts
    for i, ft in enumerate(m.reference.features):
        n, fin = m.n, c["finite"][i]
        if n <= 0:
            continue
        nan_rate, inf_rate = c["nan"][i] / n, c["inf"][i] / n
        oor = (c["below"][i] + c["above"][i]) / fin if fin > 0 else 0.0
        constant = fin >= stuck_min and (m.vmin[i] == m.vmax[i] or c["repeats"][i] >= 0.95 * fin)
        stuck = bool(constant and ft.mode_share < 0.5)
        if nan_rate + inf_rate > max_bad_rate or oor > max_out_of_range or stuck:
            out[ft.name] = {
                "nan_rate": float(nan_rate),
                "inf_rate": float(inf_rate),
                "out_of_range_rate": float(oor),
                "stuck": float(stuck),
            }
    return out


def drift_report(
    model: str,
    version: int,
    items: Sequence[DeviceSketch],
    *,
    options: DriftOptions = DriftOptions(),
    cap: float = 3.0,
    cohort: Mapping[str, str] | None = None,
    window: Mapping[str, Any] | None = None,
    segment_labels: Sequence[str] = (),
    positive: int | None = None,
    accuracy_floor: float | None = None,
) -> DriftReport:
    """Merge ``items`` (capped), test every feature, the view's mean in every direction (with
    a whitened projection: ``@mean_shift``), the predictions and the confidences against the
    reference, estimate accuracy, check data quality and segment bias.

    Realized accuracy from delayed labels, when the window has any and the reference has an
    accuracy, is one more tested item (``@accuracy``), corrected with the others."""
    merged = merge_sketches(items, cap=cap)
    ref = merged.reference
    per_device = {it.device_id: [] for it in items}  # type: dict[str, list[DeviceSketch]]
    for it in items:
        per_device[it.device_id].append(it)
    device_issues = {d: data_quality(merge_sketches(v, cap=cap)) for d, v in per_device.items()}
    quality = data_quality(merged)
    for issues in device_issues.values():  # the worst of the group and of its devices
        for name, row in issues.items():
            entry = quality.setdefault(name, dict(row))
            for k, v in row.items():
                entry[k] = max(entry[k], v)
            entry["devices"] = entry.get("devices", 0.0) + 1.0
    tests: dict[str, dict[str, float]] = {}
    if merged.n >= options.min_n:
        for i, ft in enumerate(ref.features):
            broken = {d for d, issues in device_issues.items() if ft.name in issues}
            m = merged
            if broken and len(broken) < len(per_device):
                m = merge_sketches([it for it in items if it.device_id not in broken], cap=cap)
            t = compare_counts(
                ft.counts, m.feature_hist(i), centers=_centers(ft), options=options
            ).as_dict()
            if broken:
                t["excluded_devices"] = float(len(broken) if m is not merged else 0)
            tests[ft.name] = t
        if len(merged.white_sum):
            # the view's mean in every direction at once; a device with a broken feature is
            # left out of it (its rows would move the mean for a reason that is not drift)
            broken = {d for d, issues in device_issues.items() if issues}
            m = merged
            if broken and len(broken) < len(per_device):
                m = merge_sketches([it for it in items if it.device_id not in broken], cap=cap)
            if m.white_n >= options.min_n:
                t = mean_shift_test(m.white_sum, m.white_n, ref.n)
                if broken:
                    t["excluded_devices"] = float(len(broken) if m is not merged else 0)
                tests["@mean_shift"] = t
        if merged.n_outputs >= options.min_n:
            tests["@prediction"] = compare_counts(
                ref.class_counts, merged.pred, ordered=False, options=options
            ).as_dict()
            if ref.calibration is not None:
                tests["@confidence"] = compare_counts(
                    ref.calibration.counts, merged.conf_hist, options=options
                ).as_dict()
    if ref.accuracy is not None and merged.fb_n >= 1:
        # realized accuracy (delayed labels) in the same family: exact at any label count
        ref_correct = ref.accuracy * ref.n
        drop, p = accuracy_drop_test(ref_correct, ref.n, merged.fb_correct, merged.fb_n)
        tests["@accuracy"] = {
            "n": float(merged.fb_n),
            "accuracy": float(merged.fb_correct / merged.fb_n),
            "reference": float(ref.accuracy),
            "drop": drop,
            "p": p,
        }
    names = list(tests)
    for name, p_adj in zip(names, benjamini_hochberg([tests[k]["p"] for k in names]), strict=True):
        t = tests[name]
        t["p_adj"] = p_adj
        if name == "@accuracy":
            effect = t["drop"] >= options.accuracy_floor
        elif name == "@mean_shift":
            effect = t["kl"] >= options.shift_floor
        else:
            effect = t["psi"] >= options.psi_floor
        t["drifted"] = float(p_adj <= options.alpha and effect)
    drifted = tuple(k for k in names if tests[k]["drifted"])
    accuracy = {}
    est, real = estimated_accuracy(merged), realized_accuracy(merged)
    if est is not None:
        accuracy["estimated"] = est.as_dict()
    if real is not None:
        accuracy["realized"] = real.as_dict()
    segments: dict[str, Any] = {}
    for label in segment_labels:
        table, gaps = segment_bias(items, label, positive=positive, cap=cap)
        segments[label] = {"segments": table, "gaps": [g.as_dict() for g in gaps]}
    low_accuracy = accuracy_floor is not None and est is not None and est.high < accuracy_floor
    return DriftReport(
        model=model,
        version=version,
        features=tests,
        drifted=drifted,
        window=dict(window or {}),
        cohort=dict(cohort or {}),
        reference_sha256=ref.digest(),
        n=float(merged.n),
        devices=merged.devices,
        accuracy=accuracy,
        quality=quality,
        segments=segments,
        alarm=bool(drifted) or low_accuracy,
    )


def report_metrics(report: DriftReport) -> dict[str, float]:
    """Flat metrics of a report, named as rollout gates use them."""
    feats = {k: v for k, v in report.features.items() if not k.startswith("@")}
    out: dict[str, float] = {
        "drifted_features": float(len(report.drifted)),
        "monitor_rows": report.n,
    }
    for stat in ("psi", "js", "wasserstein"):
        if feats:
            out[f"drift_{stat}_max"] = max(v.get(stat, 0.0) for v in feats.values())
    for name in ("@prediction", "@confidence"):
        if name in report.features:
            out[f"{name[1:]}_psi"] = report.features[name]["psi"]
    if "@mean_shift" in report.features:
        out["mean_shift"] = report.features["@mean_shift"]["mahalanobis"]
    if "estimated" in report.accuracy:
        out["est_accuracy"] = report.accuracy["estimated"]["value"]
        out["est_accuracy_low"] = report.accuracy["estimated"]["low"]
        out["est_accuracy_high"] = report.accuracy["estimated"]["high"]
    if "realized" in report.accuracy:
        out["realized_accuracy"] = report.accuracy["realized"]["value"]
        out["realized_accuracy_low"] = report.accuracy["realized"]["low"]
        out["realized_accuracy_high"] = report.accuracy["realized"]["high"]
    q = report.quality.values()
    out["nan_rate_max"] = max((v["nan_rate"] + v["inf_rate"] for v in q), default=0.0)
    out["out_of_range_rate_max"] = max((v["out_of_range_rate"] for v in q), default=0.0)
    out["stuck_features"] = float(sum(v["stuck"] > 0 for v in q))
    gaps = [g["gap"] for s in report.segments.values() for g in s.get("gaps", [])]
    if gaps:
        out["bias_gap_max"] = max(gaps)
    return out
