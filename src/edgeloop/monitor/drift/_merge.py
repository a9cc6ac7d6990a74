"""Validate incoming sketches and merge them with capped device weights. Pure.

A device's sketch arrives as bytes from the network: :func:`validate_sketch` parses it against
the reference of the version the device claims to run and refuses anything malformed with a
:class:`~edgeloop.errors.SketchError` (the server answers 4xx and stores nothing).

Merging weighs each device by ``min(1, cap * median / n_device)``: a device that reports
far more than the median device counts as ``cap`` median devices, so one device (broken,
hostile, or just busy) cannot outvote its cohort. Weighted counts are floats; the tests below
use them as effective counts, which makes capping conservative, never anti-conservative.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from edgeloop.errors import SketchError
from edgeloop.monitor.sketch import MAX_SKETCH_BYTES, MonitorReference, WindowSketch

__all__ = ["DeviceSketch", "MergedSketch", "group_sketches", "merge_sketches", "validate_sketch"]

F64 = npt.NDArray[np.float64]
_ADD = ("hist", "sum_z", "sum_z2", "pred", "conf_hist", "fb_labels", "white_sum")
_SCALARS = (
    "n",
    "bad_rows",
    "n_outputs",
    "bad_outputs",
    "exp_correct",
    "exp_correct_sq",
    "fb_n",
    "fb_correct",
    "fb_expected",
    "white_n",
)
_COUNTS = ("finite", "nan", "inf", "below", "above", "repeats")


def validate_sketch(
    data: bytes | str | Mapping[str, Any],
    reference: MonitorReference,
    *,
    max_bytes: int = MAX_SKETCH_BYTES,
) -> WindowSketch:
    """A trusted :class:`WindowSketch` from untrusted bytes, or a :class:`SketchError`."""
    try:
        if isinstance(data, bytes | str):
            if len(data) > max_bytes:
                raise SketchError(f"sketch: {len(data)} bytes, at most {max_bytes}")
            try:
                data = json.loads(data, parse_constant=_refuse_constant)
            except (ValueError, RecursionError) as e:
                raise SketchError(f"sketch: not valid JSON ({e})") from e
        return WindowSketch.from_dict(data, reference)
    except SketchError:
        raise
    except (TypeError, ValueError, OverflowError, IndexError, KeyError) as e:
        # the parser checks every field first; this is the net under it, still a clean refusal
        raise SketchError(f"sketch: malformed ({type(e).__name__}: {e})") from e


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a finite number")


@dataclass(frozen=True)
class DeviceSketch:
    """One device's sketch for one window, with what the server knows about the device."""

    device_id: str
    version: int
    sketch: WindowSketch
    labels: Mapping[str, str] = field(default_factory=dict)  # cohort / segment labels
    window: int = 0  # the server's window index (e.g. hour since epoch)


@dataclass
class MergedSketch:
    """Weighted sum of device sketches against one reference (float effective counts)."""

    reference: MonitorReference
    devices: int
    n_raw: int  # rows before capping
    n: float
    bad_rows: float
    hist: F64
    counts: dict[str, F64]
    sum_z: F64
    sum_z2: F64
    vmin: F64
    vmax: F64
    n_outputs: float
    bad_outputs: float
    pred: F64
    conf_hist: F64
    exp_correct: float
    exp_correct_sq: float
    fb_n: float
    fb_correct: float
    fb_expected: float
    fb_labels: F64
    white_n: float  # rows in white_sum (0 without a whitened reference)
    white_sum: F64  # summed whitened coordinates, (d,) or (0,)
    weights: dict[str, float] = field(default_factory=dict)

    def feature_hist(self, i: int) -> F64:
        return self.hist[i, : len(self.reference.features[i].edges) + 1]


def merge_sketches(items: Sequence[DeviceSketch], *, cap: float = 3.0) -> MergedSketch:
    """Merge ``items`` (all against one reference), each device weighing at most ``cap``
    times the median device's row count."""
    if not items:
        raise SketchError("merge: no sketches")
    if cap <= 0:
        raise SketchError(f"merge: cap must be > 0, got {cap}")
    ref = items[0].sketch.reference
    per_device: dict[str, WindowSketch] = {}
    for it in items:
        if it.sketch.reference_sha256 != items[0].sketch.reference_sha256:
            raise SketchError(f"merge: device {it.device_id!r} reports against another reference")
        prev = per_device.get(it.device_id)
        per_device[it.device_id] = it.sketch if prev is None else prev.merge(it.sketch)
    sizes = {d: s.n for d, s in per_device.items()}
    positive = [n for n in sizes.values() if n > 0]
    median = float(np.median(positive)) if positive else 0.0
    weights = {d: (min(1.0, cap * median / n) if n > 0 else 0.0) for d, n in sizes.items()}
    f = len(ref.features)
    first = next(iter(per_device.values()))
    acc: dict[str, Any] = {k: np.zeros_like(getattr(first, k), dtype=np.float64) for k in _ADD}
    acc.update(dict.fromkeys(_SCALARS, 0.0))
    counts = {k: np.zeros(f) for k in _COUNTS}
    vmin, vmax = np.full(f, np.inf), np.full(f, -np.inf)
    for d, s in per_device.items():
        w = weights[d]
        for k in _ADD:
            acc[k] = acc[k] + w * getattr(s, k)
        for k in _SCALARS:
            acc[k] = acc[k] + w * float(getattr(s, k))
        for k in _COUNTS:
            counts[k] = counts[k] + w * s.counts[k]
        if w > 0:
            vmin, vmax = np.fmin(vmin, s.vmin), np.fmax(vmax, s.vmax)
    return MergedSketch(
        reference=ref,
        devices=len(per_device),
        n_raw=sum(sizes.values()),
        counts=counts,
        vmin=vmin,
        vmax=vmax,
        weights=weights,
        **acc,
    )


def group_sketches(
    items: Iterable[DeviceSketch],
    key: Callable[[DeviceSketch], Hashable],
    *,
    cap: float = 3.0,
) -> dict[Hashable, MergedSketch]:
    """Merge by any grouping: ``key=lambda d: (d.version, d.labels.get("region"), d.window)``.
    Devices are capped within their group."""
    groups: dict[Hashable, list[DeviceSketch]] = defaultdict(list)
    for it in items:
        groups[key(it)].append(it)
    return {k: merge_sketches(v, cap=cap) for k, v in groups.items()}
