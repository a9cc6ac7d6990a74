"""A window sketch: what a device saw in one telemetry window, in a few kB.

Built per inference against the reference's bin edges, never holding samples: per monitored
feature the histogram, the count of finite / NaN / infinite / out-of-range values, the sum and
sum of squares of the value standardised by the reference (so adding two sketches adds their
moments with no loss), the minimum, maximum and count of repeats of the previous value (a
stuck sensor); predicted-class counts, the confidence histogram, the sum of calibrated
probabilities of being right (and of their squares, for the estimate's variance), and what
delayed labels said. With a whitened projection, the sum of each row's whitened coordinates
(and how many rows it holds): the window's mean in every direction of the view, which the
server tests against the reference's (a mean shift no single watched component carries).
Every field but ``vmin``/``vmax`` merges by addition, those by min/max, so
merging is associative and commutative and a server can merge any grouping of reports.

Per inference the cost is a fixed number of numpy operations on ``features x bins`` values
(``benchmarks/monitor.py`` measures it); memory is fixed at construction.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import numpy.typing as npt

from edgeloop.errors import SketchError
from edgeloop.monitor.sketch._checks import (
    as_float,
    as_int,
    as_str,
    float_array,
    int_array,
    mapping,
)
from edgeloop.monitor.sketch._reference import MonitorReference, softmax

__all__ = ["MAX_SKETCH_BYTES", "SKETCH_SCHEMA_VERSION", "WindowSketch"]

SKETCH_SCHEMA_VERSION = 1
MAX_SKETCH_BYTES = 256 << 10  # a reference of 128 features x 32 bins stays well below
MAX_COUNT = 10**12
_BIG = 1e150  # bound on moments, so merging any number of sketches stays finite
# a whitened coordinate is clipped to this many reference sd before it is summed: no real row
# comes near it, and a broken sensor's 1e30 cannot make the sketch unsendable; the server
# refuses sums beyond rows x WHITE_CLIP
WHITE_CLIP = 1e6

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
_ERR = SketchError
_COUNTS = ("finite", "nan", "inf", "below", "above", "repeats")
_CONF_BINS = 10  # without a calibration: equal-width confidence bins on [0, 1]


class WindowSketch:
    """Mergeable per-window summary against one :class:`MonitorReference`. Not thread-safe:
    the agent serialises calls to :meth:`update`."""

    def __init__(self, reference: MonitorReference) -> None:
        self.reference = reference
        self.reference_sha256 = reference.digest()
        f = len(reference.features)
        self._nbins = np.array([len(ft.edges) + 1 for ft in reference.features])
        self._width = int(self._nbins.max())
        edges = np.full((f, self._width - 1), np.inf)
        for i, ft in enumerate(reference.features):
            edges[i, : len(ft.edges)] = ft.edges
        self._edges = edges
        self._mean = np.array([ft.mean for ft in reference.features])
        self._std = np.array([ft.std for ft in reference.features])
        self._low = np.array([ft.low for ft in reference.features])
        self._high = np.array([ft.high for ft in reference.features])
        cal = reference.calibration
        self._conf_edges = cal.edges if cal else np.linspace(0, 1, _CONF_BINS + 1)[1:-1]
        self._last = np.full(f, np.nan)
        k = len(reference.classes)
        self.n = 0  # rows seen
        self.bad_rows = 0  # rows with a non-finite value (not projected)
        self.hist = np.zeros((f, self._width), dtype=np.int64)
        self.counts = {c: np.zeros(f, dtype=np.int64) for c in _COUNTS}
        self.sum_z = np.zeros(f)
        self.sum_z2 = np.zeros(f)
        self.vmin = np.full(f, np.inf)
        self.vmax = np.full(f, -np.inf)
        self.n_outputs = 0  # rows with finite outputs
        self.bad_outputs = 0
        self.pred = np.zeros(k, dtype=np.int64)
        self.conf_hist = np.zeros(len(self._conf_edges) + 1, dtype=np.int64)
        self.exp_correct = 0.0  # sum of calibrated P(right); needs a calibration
        self.exp_correct_sq = 0.0
        self.fb_n = 0  # delayed labels received
        self.fb_correct = 0
        self.fb_expected = 0.0  # sum of calibrated P(right) of the labelled predictions
        self.fb_labels = np.zeros(k, dtype=np.int64)
        proj = reference.projection
        self._whiten = None if proj is None else proj.whiten
        self.white_n = 0  # rows in white_sum (finite inputs)
        self.white_sum = np.zeros(0 if self._whiten is None else len(self._whiten))
        self.start: float | None = None
        self.end: float | None = None

    # --- on the device -------------------------------------------------------------------
    def update(self, x: npt.ArrayLike, outputs: npt.ArrayLike | None = None) -> F64 | None:
        """Add a batch: inputs ``x`` (batch, ...) (or the embedding, for an embedding view) and
        the model's ``outputs`` (batch, classes). Returns each row's calibrated probability of
        being right (None without outputs or calibration), for the feedback store."""
        ref = self.reference
        xa = np.asarray(x, dtype=np.float64)
        b = xa.shape[0] if xa.ndim > 1 else 1
        if b == 0:
            return None if outputs is None else np.zeros(0)
        xa = xa.reshape(b, -1)
        if xa.shape[1] != ref.width:
            raise _ERR(f"sketch update: expected {ref.width} values per row, got {xa.shape[1]}")
        self.n += b
        if ref.projection is not None:
            ok = np.isfinite(xa).all(axis=1)
            v = np.full((b, len(ref.features)), np.nan)
            centred = xa[ok] - ref.projection.mean  # Projection.apply, sharing the centring
            v[ok] = centred @ ref.projection.components.T
            self.bad_rows += int(b - len(centred))
            if self._whiten is not None and len(centred):
                with np.errstate(over="ignore", invalid="ignore"):
                    w = centred @ self._whiten.T
                    if not (np.abs(w) <= WHITE_CLIP).all():  # rare: huge or overflowed rows
                        w = np.clip(w, -WHITE_CLIP, WHITE_CLIP)
                        w = w[np.isfinite(w).all(axis=1)]
                self.white_n += len(w)
                self.white_sum += w.sum(axis=0)
        else:
            v = xa
            self.bad_rows += int((~np.isfinite(v).all(axis=1)).sum())
        fin = np.isfinite(v)
        isnan = np.isnan(v)
        c = self.counts
        c["finite"] += fin.sum(axis=0)
        c["nan"] += isnan.sum(axis=0)
        c["inf"] += (~fin & ~isnan).sum(axis=0)
        vz = np.where(fin, v, 0.0)
        c["below"] += (fin & (vz < self._low)).sum(axis=0)
        c["above"] += (fin & (vz > self._high)).sum(axis=0)
        z = (vz - self._mean) / self._std * fin
        self.sum_z += z.sum(axis=0)
        self.sum_z2 += (z * z).sum(axis=0)
        self.vmin = np.fmin(self.vmin, np.where(fin, v, np.inf).min(axis=0))
        self.vmax = np.fmax(self.vmax, np.where(fin, v, -np.inf).max(axis=0))
        prev = np.vstack([self._last[None], v[:-1]])
        c["repeats"] += (fin & (v == prev)).sum(axis=0)
        self._last = v[-1].copy()
        bins = (vz[:, :, None] >= self._edges[None]).sum(axis=2)
        flat = (np.arange(v.shape[1]) * self._width + bins)[fin]
        self.hist += np.bincount(flat, minlength=self.hist.size).reshape(self.hist.shape)
        if outputs is None:
            return None
        return self._outputs(np.asarray(outputs, dtype=np.float64).reshape(b, -1))

    def _outputs(self, out: F64) -> F64 | None:
        ref = self.reference
        if out.shape[1] != len(ref.classes):
            raise _ERR(
                f"sketch update: expected {len(ref.classes)} outputs per row, got {out.shape[1]}"
            )
        rows = out.shape[0]
        ok = np.isfinite(out).all(axis=1)
        self.bad_outputs += int((~ok).sum())
        out = out[ok]
        self.n_outputs += len(out)
        probs = softmax(out) if ref.output_kind == "logits" else out
        self.pred += np.bincount(probs.argmax(axis=1), minlength=len(self.pred))
        cb = np.searchsorted(self._conf_edges, probs.max(axis=1), side="right")
        self.conf_hist += np.bincount(cb, minlength=len(self.conf_hist))
        if ref.calibration is None:
            return None
        p = ref.calibration.accuracy[cb]
        self.exp_correct += float(p.sum())
        self.exp_correct_sq += float((p * p).sum())
        full = np.full(rows, np.nan)
        full[ok] = p
        return full

    def add_feedback(self, predicted: int, label: int, p_correct: float | None) -> None:
        """A delayed label for a prediction of this version (see ``FeedbackStore``)."""
        k = len(self.reference.classes)
        if not (0 <= predicted < k and 0 <= label < k):
            raise _ERR(f"feedback: classes must be in 0..{k - 1}, got {predicted}, {label}")
        self.fb_n += 1
        self.fb_correct += int(predicted == label)
        self.fb_labels[label] += 1
        if p_correct is not None and np.isfinite(p_correct):
            self.fb_expected += float(p_correct)

    # --- merging -------------------------------------------------------------------------
    def merge(self, other: WindowSketch) -> WindowSketch:
        """A new sketch holding both windows (same reference)."""
        if other.reference_sha256 != self.reference_sha256:
            raise _ERR("merge: sketches against different references")
        out = WindowSketch.__new__(WindowSketch)
        out.__dict__.update(self.__dict__)
        for name in (
            "n",
            "bad_rows",
            "hist",
            "sum_z",
            "sum_z2",
            "n_outputs",
            "bad_outputs",
            "pred",
            "conf_hist",
            "exp_correct",
            "exp_correct_sq",
            "fb_n",
            "fb_correct",
            "fb_expected",
            "fb_labels",
            "white_n",
            "white_sum",
        ):
            setattr(out, name, getattr(self, name) + getattr(other, name))
        out.counts = {k: self.counts[k] + other.counts[k] for k in _COUNTS}
        out.vmin = np.fmin(self.vmin, other.vmin)
        out.vmax = np.fmax(self.vmax, other.vmax)
        out.start = _opt(min, self.start, other.start)
        out.end = _opt(max, self.end, other.end)
        out._last = np.full(len(self.vmin), np.nan)
        return out

    __add__ = merge

    # --- the wire ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        fin = self.counts["finite"] > 0
        white: dict[str, Any] = {}
        if self._whiten is not None:  # only against a whitened reference: older sketches as were
            white = {"white_n": self.white_n, "white_sum": _round(self.white_sum, 10)}
        return {
            "kind": "window_sketch",
            "schema_version": SKETCH_SCHEMA_VERSION,
            "reference_sha256": self.reference_sha256,
            "start": self.start,
            "end": self.end,
            "n": self.n,
            "bad_rows": self.bad_rows,
            "hist": [row[:nb].tolist() for row, nb in zip(self.hist, self._nbins, strict=True)],
            **{k: v.tolist() for k, v in self.counts.items()},
            "sum_z": _round(self.sum_z),
            "sum_z2": _round(self.sum_z2),
            "vmin": np.where(fin, self.vmin, 0.0).tolist(),
            "vmax": np.where(fin, self.vmax, 0.0).tolist(),
            "n_outputs": self.n_outputs,
            "bad_outputs": self.bad_outputs,
            "pred": self.pred.tolist(),
            "conf_hist": self.conf_hist.tolist(),
            "exp_correct": self.exp_correct,
            "exp_correct_sq": self.exp_correct_sq,
            "fb_n": self.fb_n,
            "fb_correct": self.fb_correct,
            "fb_expected": self.fb_expected,
            "fb_labels": self.fb_labels.tolist(),
            **white,
        }

    def to_json(self) -> bytes:
        return json.dumps(
            self.to_dict(), sort_keys=True, separators=(",", ":"), allow_nan=False
        ).encode()

    @classmethod
    def from_json(cls, data: bytes | str, reference: MonitorReference) -> WindowSketch:
        if len(data) > MAX_SKETCH_BYTES:
            raise _ERR(f"sketch: {len(data)} bytes, at most {MAX_SKETCH_BYTES}")
        try:
            parsed = json.loads(data, parse_constant=_no_constant)
        except (ValueError, RecursionError) as e:
            raise _ERR(f"sketch: not valid JSON ({e})") from e
        return cls.from_dict(parsed, reference)

    @classmethod
    def from_dict(cls, data: Any, reference: MonitorReference) -> WindowSketch:
        """Parse and check a sketch against ``reference``: every count a non-negative integer
        of the reference's shape, every float finite, and the counts consistent with each
        other (histograms sum to the finite count, finite + NaN + inf = rows ...)."""
        d = mapping(data, "sketch", _ERR)
        if d.get("kind") != "window_sketch" or d.get("schema_version") != SKETCH_SCHEMA_VERSION:
            raise _ERR(
                f"sketch: expected kind 'window_sketch' schema_version "
                f"{SKETCH_SCHEMA_VERSION}, got {d.get('kind')!r:.30} "
                f"{d.get('schema_version')!r:.10}"
            )
        s = cls(reference)
        claimed = as_str(d.get("reference_sha256"), "sketch.reference_sha256", _ERR, 64)
        if claimed != s.reference_sha256:
            raise _ERR(
                f"sketch: made against reference {claimed[:12]}..., expected "
                f"{s.reference_sha256[:12]}..."
            )
        f, k = len(reference.features), len(reference.classes)
        s.n = as_int(d.get("n"), "sketch.n", _ERR, hi=MAX_COUNT)
        s.bad_rows = as_int(d.get("bad_rows"), "sketch.bad_rows", _ERR, hi=s.n)
        hist = d.get("hist")
        if not isinstance(hist, list) or len(hist) != f:
            raise _ERR(f"sketch.hist: expected {f} histograms")
        for i, (row, nb) in enumerate(zip(hist, s._nbins, strict=True)):
            s.hist[i, :nb] = int_array(row, f"sketch.hist[{i}]", _ERR, size=int(nb), hi=s.n)
        for c in _COUNTS:
            s.counts[c] = int_array(d.get(c), f"sketch.{c}", _ERR, size=f, hi=s.n)
        s.sum_z = float_array(d.get("sum_z"), "sketch.sum_z", _ERR, size=f, lo=-_BIG, hi=_BIG)
        s.sum_z2 = float_array(d.get("sum_z2"), "sketch.sum_z2", _ERR, size=f, lo=0, hi=_BIG)
        s.vmin = float_array(d.get("vmin"), "sketch.vmin", _ERR, size=f)
        s.vmax = float_array(d.get("vmax"), "sketch.vmax", _ERR, size=f)
        s.n_outputs = as_int(d.get("n_outputs"), "sketch.n_outputs", _ERR, hi=s.n)
        s.bad_outputs = as_int(d.get("bad_outputs"), "sketch.bad_outputs", _ERR, hi=s.n)
        s.pred = int_array(d.get("pred"), "sketch.pred", _ERR, size=k, max_size=k, hi=s.n)
        s.conf_hist = int_array(
            d.get("conf_hist"), "sketch.conf_hist", _ERR, size=len(s.conf_hist), hi=s.n
        )
        s.exp_correct = as_float(d.get("exp_correct"), "sketch.exp_correct", _ERR, 0, s.n_outputs)
        s.exp_correct_sq = as_float(
            d.get("exp_correct_sq"),
            "sketch.exp_correct_sq",
            _ERR,
            0,
            s.exp_correct * (1 + 1e-9) + 1e-9,
        )
        s.fb_n = as_int(d.get("fb_n"), "sketch.fb_n", _ERR, hi=MAX_COUNT)
        s.fb_correct = as_int(d.get("fb_correct"), "sketch.fb_correct", _ERR, hi=s.fb_n)
        s.fb_expected = as_float(d.get("fb_expected"), "sketch.fb_expected", _ERR, 0, s.fb_n)
        s.fb_labels = int_array(
            d.get("fb_labels"), "sketch.fb_labels", _ERR, size=k, max_size=k, hi=s.fb_n
        )
        if s._whiten is not None:
            s.white_n = as_int(d.get("white_n"), "sketch.white_n", _ERR, hi=s.n - s.bad_rows)
            bound = s.white_n * WHITE_CLIP
            s.white_sum = float_array(
                d.get("white_sum"),
                "sketch.white_sum",
                _ERR,
                size=len(s._whiten),
                max_size=len(s._whiten),
                lo=-bound,
                hi=bound,
            )
        s.start = _opt_float(d.get("start"), "sketch.start")
        s.end = _opt_float(d.get("end"), "sketch.end")
        s._check_consistent()
        fin = s.counts["finite"] == 0
        s.vmin[fin], s.vmax[fin] = np.inf, -np.inf
        return s

    def _check_consistent(self) -> None:
        c = self.counts
        tol = 1e-6
        problems = [
            (np.any(self.hist.sum(axis=1) != c["finite"]), "histograms must sum to 'finite'"),
            (
                np.any(c["finite"] + c["nan"] + c["inf"] != self.n),
                "finite + nan + inf must equal n for every feature",
            ),
            (np.any(c["below"] + c["above"] > c["finite"]), "below + above exceed 'finite'"),
            (np.any(c["repeats"] > c["finite"]), "repeats exceed 'finite'"),
            (self.n_outputs + self.bad_outputs > self.n, "n_outputs + bad_outputs exceed n"),
            (int(self.pred.sum()) != self.n_outputs, "pred must sum to n_outputs"),
            (int(self.conf_hist.sum()) != self.n_outputs, "conf_hist must sum to n_outputs"),
            (int(self.fb_labels.sum()) != self.fb_n, "fb_labels must sum to fb_n"),
            (
                np.any(self.sum_z**2 > self.sum_z2 * np.maximum(c["finite"], 1) * (1 + tol) + tol),
                "sum_z and sum_z2 are inconsistent",
            ),
            (np.any((c["finite"] > 0) & (self.vmin > self.vmax)), "vmin exceeds vmax"),
            (
                np.any((c["finite"] == 0) & (np.abs(self.sum_z) + self.sum_z2 > 0)),
                "moments without finite values",
            ),
            (
                self.start is not None and self.end is not None and self.start > self.end,
                "start after end",
            ),
        ]
        for bad, why in problems:
            if bad:
                raise _ERR(f"sketch: {why}")

    def size_bytes(self) -> int:
        return len(self.to_json())


def _round(a: F64, digits: int = 12) -> list[float]:
    # 12 significant digits: moments to well below any test's resolution, fewer bytes
    return [float(f"{v:.{digits}g}") for v in a.tolist()]


def _opt(fn: Any, a: float | None, b: float | None) -> float | None:
    vals = [v for v in (a, b) if v is not None]
    return fn(vals) if vals else None


def _opt_float(v: Any, where: str) -> float | None:
    return None if v is None else as_float(v, where, _ERR, 0, 1e11)


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a finite number")
