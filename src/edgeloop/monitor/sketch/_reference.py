"""The monitoring reference: what "normal" looked like on the data a version was packed with.

Computed once at pack time from calibration or validation data and signed into the bundle:

* per monitored feature, interior bin edges at the reference quantiles (equal-mass bins, so
  every bin holds about ``1/bins`` of the reference and a test has counts to work with), the
  reference histogram against them, mean, standard deviation, a plausible range (outside it a
  value counts as out of range) and the share of the commonest value (a feature that is
  naturally constant is not a stuck sensor);
* for inputs too wide to watch per feature (images, token ids, long windows) a **projection**
  (PCA by SVD of the reference, numpy only): the device projects the flattened input, or the
  model's penultimate activations (``source="embedding"``), to a few components, and those are
  the monitored features;
* with a projection, its **whitening**: the principal directions of the view (all of them
  whose variance is not negligible, up to ``whiten`` (64)) scaled to unit reference variance.
  The device sums each row's whitened coordinates, so the server can test the window's mean
  against the reference's in every direction of the view at once (a Hotelling test), and not
  only along the few components watched per feature;
* predicted-class and true-label frequencies, and the **calibration** of the top-1 confidence:
  histogram binning on equal-mass confidence bins made monotone by pool-adjacent-violators
  (isotonic regression on the binned data). A device turns each confidence into a calibrated
  probability of being right; their sum over a window is the confidence-based performance
  estimate (CBPE, as NannyML calls it), with no labels. We write the 20 lines of PAV rather than
  depend on scikit-learn, which a device does not have.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from edgeloop.errors import MonitorReferenceError
from edgeloop.monitor.sketch._checks import (
    as_float,
    as_int,
    as_str,
    float_array,
    int_array,
    mapping,
)

__all__ = [
    "MAX_BINS",
    "MAX_CLASSES",
    "MAX_FEATURES",
    "REFERENCE_SCHEMA_VERSION",
    "Calibration",
    "FeatureReference",
    "MonitorReference",
    "Projection",
    "build_reference",
]

REFERENCE_SCHEMA_VERSION = 1
MAX_FEATURES = 128
MAX_BINS = 32
MAX_CLASSES = 1000
MAX_COMPONENTS = 32
MAX_WHITEN = 128  # whitened directions a reference may keep
# a view is whitened only from at least this many reference rows per value of its width: a
# covariance estimated from fewer underestimates its small eigenvalues (har's 384-value input
# from 2,000 rows: whitened variances up to 1.3 on fresh data, and 3.5 % of 50-row windows
# under p = 0.0005), and the test's F law assumes the reference's covariance is the truth's
WHITEN_ROWS_PER_VALUE = 20
WHITEN_DIGITS = 9  # significant digits of the whitening matrix (bytes in the bundle)
# significant digits of a feature's bin edges and moments and of the calibration: the values
# watched are float32 inputs or activations (about 7 digits); float64's 17 only cost bundle
# bytes (a re-baselined reference ships its statistics again: a fix's delta carries them)
STAT_DIGITS = 7
MAX_WHITEN_SCALE = 1e12  # |value| bound of a whitening entry (1 / a direction's sd)
MAX_PROJECTION_VALUES = 1 << 20  # components x input width
MAX_REFERENCE_BYTES = 32 << 20
MAX_REFERENCE_N = 10**9

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
_ERR = MonitorReferenceError


@dataclass(frozen=True, eq=False)
class FeatureReference:
    name: str
    edges: F64  # interior cut points, strictly increasing; len(edges) + 1 bins
    counts: I64  # reference count per bin
    low: float  # values below ``low`` or above ``high`` count as out of range
    high: float
    mean: float
    std: float  # > 0
    mode_share: float  # share of the commonest value in the reference, in [0, 1]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "edges": self.edges.tolist(),
            "counts": self.counts.tolist(),
            "low": self.low,
            "high": self.high,
            "mean": self.mean,
            "std": self.std,
            "mode_share": self.mode_share,
        }

    @classmethod
    def from_dict(cls, data: Any, where: str) -> FeatureReference:
        d = mapping(data, where, _ERR)
        edges = float_array(d.get("edges"), f"{where}.edges", _ERR, max_size=MAX_BINS - 1)
        if np.any(np.diff(edges) <= 0):
            raise _ERR(f"{where}.edges: expected strictly increasing values")
        counts = int_array(
            d.get("counts"), f"{where}.counts", _ERR, size=len(edges) + 1, hi=MAX_REFERENCE_N
        )
        low = as_float(d.get("low"), f"{where}.low", _ERR)
        high = as_float(d.get("high"), f"{where}.high", _ERR, lo=low)
        return cls(
            name=as_str(d.get("name"), f"{where}.name", _ERR, max_len=100),
            edges=edges,
            counts=counts,
            low=low,
            high=high,
            mean=as_float(d.get("mean"), f"{where}.mean", _ERR),
            std=as_float(d.get("std"), f"{where}.std", _ERR, lo=1e-300),
            mode_share=as_float(d.get("mode_share"), f"{where}.mode_share", _ERR, lo=0, hi=1),
        )


@dataclass(frozen=True, eq=False)
class Projection:
    """``(x - mean) @ components.T``: a wide vector to a few monitored components.

    ``whiten`` (d, width), when present: ``(x - mean) @ whiten.T`` has mean 0 and identity
    covariance on the reference (its rows are principal directions over their standard
    deviations), the view the multivariate mean-shift test sums."""

    source: Literal["input", "embedding"]
    mean: F64  # (width,)
    components: F64  # (k, width), orthonormal rows
    output: str | None = None  # the graph output holding the embedding (source="embedding")
    whiten: F64 | None = None  # (d, width): principal directions / their reference sd

    def apply(self, x: F64) -> F64:
        return (x - self.mean) @ self.components.T  # type: ignore[no-any-return]

    def whitened(self, x: F64) -> F64:
        """Whitened coordinates of rows ``x`` (n, width); needs ``whiten``."""
        assert self.whiten is not None
        return (x - self.mean) @ self.whiten.T  # type: ignore[no-any-return]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "source": self.source,
            "mean": self.mean.tolist(),
            "components": self.components.tolist(),
            "output": self.output,
        }
        if self.whiten is not None:  # absent, not null: older references keep their digest
            out["whiten"] = self.whiten.tolist()
        return out

    @classmethod
    def from_dict(cls, data: Any) -> Projection:
        d = mapping(data, "projection", _ERR)
        source = d.get("source")
        if source not in ("input", "embedding"):
            raise _ERR(f"projection.source: expected 'input' or 'embedding', got {source!r:.40}")
        mean = float_array(d.get("mean"), "projection.mean", _ERR, max_size=MAX_PROJECTION_VALUES)
        rows = d.get("components")
        if not isinstance(rows, list) or not 1 <= len(rows) <= MAX_COMPONENTS:
            raise _ERR(f"projection.components: expected 1..{MAX_COMPONENTS} rows")
        if len(rows) * len(mean) > MAX_PROJECTION_VALUES or len(mean) == 0:
            raise _ERR(f"projection: at most {MAX_PROJECTION_VALUES} values, input width >= 1")
        comps = np.stack(
            [
                float_array(
                    r,
                    f"projection.components[{i}]",
                    _ERR,
                    size=len(mean),
                    max_size=MAX_PROJECTION_VALUES,
                    lo=-1,
                    hi=1,
                )
                for i, r in enumerate(rows)
            ]
        )
        output = d.get("output")
        if output is not None:
            output = as_str(output, "projection.output", _ERR)
        whiten = None
        if d.get("whiten") is not None:
            wrows = d["whiten"]
            if not isinstance(wrows, list) or not 1 <= len(wrows) <= MAX_WHITEN:
                raise _ERR(f"projection.whiten: expected 1..{MAX_WHITEN} rows")
            if len(wrows) * len(mean) > MAX_PROJECTION_VALUES:
                raise _ERR(f"projection.whiten: at most {MAX_PROJECTION_VALUES} values")
            whiten = np.stack(
                [
                    float_array(
                        r,
                        f"projection.whiten[{i}]",
                        _ERR,
                        size=len(mean),
                        max_size=MAX_PROJECTION_VALUES,
                        lo=-MAX_WHITEN_SCALE,
                        hi=MAX_WHITEN_SCALE,
                    )
                    for i, r in enumerate(wrows)
                ]
            )
        return cls(source=source, mean=mean, components=comps, output=output, whiten=whiten)


@dataclass(frozen=True, eq=False)
class Calibration:
    """Calibrated P(top-1 is right) per confidence bin, fitted on labelled reference data."""

    edges: F64  # interior cut points in (0, 1), strictly increasing
    accuracy: F64  # per bin, non-decreasing, in [0, 1]
    counts: I64  # reference samples per bin (the reference confidence histogram)

    def bins(self, confidence: F64) -> npt.NDArray[np.intp]:
        return np.searchsorted(self.edges, confidence, side="right")

    def to_dict(self) -> dict[str, Any]:
        return {
            "edges": self.edges.tolist(),
            "accuracy": self.accuracy.tolist(),
            "counts": self.counts.tolist(),
        }

    @classmethod
    def from_dict(cls, data: Any) -> Calibration:
        d = mapping(data, "calibration", _ERR)
        edges = float_array(
            d.get("edges"), "calibration.edges", _ERR, max_size=MAX_BINS - 1, lo=0, hi=1
        )
        if np.any(np.diff(edges) <= 0):
            raise _ERR("calibration.edges: expected strictly increasing values")
        acc = float_array(
            d.get("accuracy"), "calibration.accuracy", _ERR, size=len(edges) + 1, lo=0, hi=1
        )
        if np.any(np.diff(acc) < 0):
            raise _ERR("calibration.accuracy: expected non-decreasing values (isotonic)")
        counts = int_array(
            d.get("counts"), "calibration.counts", _ERR, size=len(edges) + 1, hi=MAX_REFERENCE_N
        )
        return cls(edges=edges, accuracy=acc, counts=counts)


@dataclass(frozen=True, eq=False)
class MonitorReference:
    """Everything a device needs to sketch a window and the server needs to test it."""

    features: tuple[FeatureReference, ...]
    classes: tuple[str, ...]
    class_counts: I64  # reference predicted-class counts
    n: int
    output_kind: Literal["probabilities", "logits"] = "probabilities"
    projection: Projection | None = None
    label_counts: I64 | None = None  # reference true-label counts, when labels were given
    calibration: Calibration | None = None
    accuracy: float | None = None  # top-1 accuracy on the reference, when labels were given

    @property
    def width(self) -> int:
        """How many values per sample the device passes to the sketch."""
        return len(self.projection.mean) if self.projection else len(self.features)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "monitor_reference",
            "schema_version": REFERENCE_SCHEMA_VERSION,
            "features": [f.to_dict() for f in self.features],
            "classes": list(self.classes),
            "class_counts": self.class_counts.tolist(),
            "n": self.n,
            "output_kind": self.output_kind,
            "projection": self.projection.to_dict() if self.projection else None,
            "label_counts": None if self.label_counts is None else self.label_counts.tolist(),
            "calibration": self.calibration.to_dict() if self.calibration else None,
            "accuracy": self.accuracy,
        }

    def to_json(self) -> bytes:
        """Canonical JSON (sorted keys, no spaces, no NaN): the bytes a bundle signs."""
        return json.dumps(
            self.to_dict(), sort_keys=True, separators=(",", ":"), allow_nan=False
        ).encode()

    def digest(self) -> str:
        """sha256 of :meth:`to_json`, computed once (a reference is not changed after it is
        built; every sketch of a window checks it)."""
        cached = self.__dict__.get("_digest")
        if cached is None:
            cached = hashlib.sha256(self.to_json()).hexdigest()
            object.__setattr__(self, "_digest", cached)
        return cached  # type: ignore[no-any-return]

    @classmethod
    def from_json(cls, data: bytes | str) -> MonitorReference:
        if len(data) > MAX_REFERENCE_BYTES:
            raise _ERR(f"monitor reference: {len(data)} bytes, at most {MAX_REFERENCE_BYTES}")
        try:
            parsed = json.loads(data, parse_constant=_no_constant)
        except (ValueError, RecursionError) as e:
            raise _ERR(f"monitor reference: not valid JSON ({e})") from e
        return cls.from_dict(parsed)

    @classmethod
    def from_dict(cls, data: Any) -> MonitorReference:
        d = mapping(data, "monitor reference", _ERR)
        if d.get("kind") != "monitor_reference":
            raise _ERR(f"expected kind 'monitor_reference', got {d.get('kind')!r:.40}")
        version = d.get("schema_version")
        if version != REFERENCE_SCHEMA_VERSION:
            raise _ERR(
                f"monitor reference: expected schema_version "
                f"{REFERENCE_SCHEMA_VERSION}, got {version!r:.20}"
            )
        feats = d.get("features")
        if not isinstance(feats, list) or not 1 <= len(feats) <= MAX_FEATURES:
            raise _ERR(f"features: expected a list of 1..{MAX_FEATURES} features")
        features = tuple(
            FeatureReference.from_dict(f, f"features[{i}]") for i, f in enumerate(feats)
        )
        if len({f.name for f in features}) != len(features):
            raise _ERR("features: names must be unique")
        classes_raw = d.get("classes")
        if not isinstance(classes_raw, list) or not 2 <= len(classes_raw) <= MAX_CLASSES:
            raise _ERR(f"classes: expected a list of 2..{MAX_CLASSES} names")
        classes = tuple(as_str(c, f"classes[{i}]", _ERR, 100) for i, c in enumerate(classes_raw))
        k = len(classes)
        n = as_int(d.get("n"), "n", _ERR, lo=1, hi=MAX_REFERENCE_N)
        class_counts = int_array(
            d.get("class_counts"), "class_counts", _ERR, size=k, max_size=MAX_CLASSES
        )
        kind = d.get("output_kind")
        if kind not in ("probabilities", "logits"):
            raise _ERR(f"output_kind: expected 'probabilities' or 'logits', got {kind!r:.40}")
        projection = None if d.get("projection") is None else Projection.from_dict(d["projection"])
        if projection is not None and len(projection.components) != len(features):
            raise _ERR(
                f"projection: {len(projection.components)} components for {len(features)} features"
            )
        if projection is not None and projection.whiten is not None and (
            len(projection.whiten) > n - 2
        ):
            raise _ERR(
                f"projection.whiten: {len(projection.whiten)} directions need a reference of "
                f"more than {len(projection.whiten) + 1} rows, got n={n}"
            )
        labels = (
            None
            if d.get("label_counts") is None
            else int_array(d["label_counts"], "label_counts", _ERR, size=k, max_size=MAX_CLASSES)
        )
        cal = None if d.get("calibration") is None else Calibration.from_dict(d["calibration"])
        acc = None if d.get("accuracy") is None else as_float(d["accuracy"], "accuracy", _ERR, 0, 1)
        for name, arr in (
            ("class_counts", class_counts),
            ("label_counts", labels),
            *((f"features[{i}].counts", f.counts) for i, f in enumerate(features)),
        ):
            if arr is not None and int(arr.sum()) != n:
                raise _ERR(f"{name}: counts sum to {int(arr.sum())}, expected n={n}")
        return cls(
            features=features,
            classes=classes,
            class_counts=class_counts,
            n=n,
            output_kind=kind,
            projection=projection,
            label_counts=labels,
            calibration=cal,
            accuracy=acc,
        )


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a finite number")


def softmax(scores: F64) -> F64:
    z = scores - scores.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)  # type: ignore[no-any-return]


def _equal_mass_edges(values: F64, bins: int) -> F64:
    qs = np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1])
    return np.unique(_digits(qs))


def _digits(a: F64) -> F64:
    """``a`` to :data:`STAT_DIGITS` significant digits (the values a reference stores)."""
    return np.array([float(f"{v:.{STAT_DIGITS}g}") for v in np.asarray(a, np.float64).ravel()])


def _digit(v: float) -> float:
    return float(f"{v:.{STAT_DIGITS}g}")


def _outside(bound: float, seen: float, side: int) -> float:
    """``bound`` rounded, unless rounding would bring it inside the values ``seen``."""
    r = _digit(bound)
    return r if (r - seen) * side >= 0 else bound


def _pav(y: F64, w: F64) -> F64:
    """Pool adjacent violators: the non-decreasing fit of ``y`` with weights ``w``."""
    vals: list[float] = []
    wts: list[float] = []
    sizes: list[int] = []
    for yi, wi in zip(y.tolist(), w.tolist(), strict=True):
        vals.append(yi)
        wts.append(wi)
        sizes.append(1)
        while len(vals) > 1 and vals[-2] > vals[-1]:
            wsum = wts[-2] + wts[-1]
            merged = (vals[-2] * wts[-2] + vals[-1] * wts[-1]) / wsum if wsum else vals[-1]
            vals[-2:] = [merged]
            wts[-2:] = [wsum]
            sizes[-2:] = [sizes[-2] + sizes[-1]]
    return np.repeat(np.asarray(vals), sizes)


def _whitening(sv: F64, vt: F64, n: int, limit: int) -> F64 | None:
    """Principal directions over their reference standard deviation (ddof 1): the directions
    whose variance is at least a millionth of the largest (a dead unit or float noise is not
    a direction to test), at most ``limit``, ``MAX_WHITEN`` and a quarter of the rows; none
    for a view wider than a ``WHITEN_ROWS_PER_VALUE``-th of the rows (the covariance must be
    well estimated for the test's F distribution to hold)."""
    if limit < 0 or limit > MAX_WHITEN:
        raise _ERR(f"build_reference: whiten must be in 0..{MAX_WHITEN}, got {limit}")
    var = sv * sv / max(n - 1, 1)
    if limit == 0 or len(var) == 0 or var[0] <= 0 or vt.shape[1] * WHITEN_ROWS_PER_VALUE > n:
        return None
    keep = int(np.sum(var >= 1e-6 * var[0]))
    d = min(keep, limit, n // 4, MAX_PROJECTION_VALUES // vt.shape[1])
    if d < 1:
        return None
    w = vt[:d] / np.sqrt(var[:d])[:, None]
    # fewer digits, fewer bundle bytes; device and server both use the rounded matrix
    return np.array([[float(f"{v:.{WHITEN_DIGITS}g}") for v in row] for row in w.tolist()])


def _feature_ref(name: str, v: F64, bins: int, margin: float) -> FeatureReference:
    edges = _equal_mass_edges(v, bins)
    counts = np.bincount(np.searchsorted(edges, v, side="right"), minlength=len(edges) + 1)
    lo, hi = float(v.min()), float(v.max())
    span = hi - lo if hi > lo else max(abs(lo), 1.0)
    _, freq = np.unique(v, return_counts=True)
    std = _digit(float(v.std()))
    return FeatureReference(
        name=name,
        edges=edges.astype(np.float64),
        counts=counts.astype(np.int64),
        low=_outside(lo - margin * span, lo, -1),
        high=_outside(hi + margin * span, hi, 1),
        mean=_digit(float(v.mean())),
        std=std if std > 0 else 1.0,
        mode_share=_digit(float(freq.max() / len(v))),
    )


def build_reference(
    x: npt.ArrayLike,
    outputs: npt.ArrayLike,
    labels: npt.ArrayLike | None = None,
    *,
    classes: Sequence[str] | None = None,
    output_kind: Literal["probabilities", "logits"] = "probabilities",
    feature_names: Sequence[str] | None = None,
    embeddings: npt.ArrayLike | None = None,
    embedding_output: str | None = None,
    max_features: int = 32,
    components: int = 8,
    whiten: int = 64,
    bins: int = 10,
    calibration_bins: int = 10,
    margin: float = 0.1,
    projection: Projection | None = None,
) -> MonitorReference:
    """The reference for reference inputs ``x`` (n, ...), model ``outputs`` (n, classes).

    Inputs of at most ``max_features`` values per sample are watched per feature; wider ones
    (or any, when ``embeddings`` (n, d) are given) through a PCA projection to ``components``;
    such a projection also carries the whitening of up to ``whiten`` principal directions (0:
    none) for the multivariate mean-shift test: those with a variance above a millionth of
    the largest, at most a quarter of the reference's rows, and none for a view wider than
    a twentieth of the rows.
    ``labels`` (n,) enable the calibration and the reference accuracy. Use held-out data (not
    the training set): calibration fitted on training data is overconfident.

    ``projection``: keep its components (an earlier reference's) instead of fitting a PCA: the
    re-baseline of a version whose embedding did not change (a head-only fine-tune) then
    watches the same components, comparable across versions, and its bundle ships no new
    ones. Its source must be the view given (``embeddings`` or the input) and its width the
    view's. A whitening, when it has one, is of its own reference data (the mean-shift test
    takes the reference's whitened mean as 0 and its covariance as the identity): the mean
    and the whitening are fitted again on this data.
    """
    xa = np.asarray(x, dtype=np.float64)
    out = np.asarray(outputs, dtype=np.float64)
    n = len(xa)
    if n < 2 or out.ndim != 2 or len(out) != n or not 2 <= out.shape[1] <= MAX_CLASSES:
        raise _ERR(
            f"build_reference: expected n >= 2 samples and outputs (n, 2..{MAX_CLASSES})"
            f", got x {xa.shape} and outputs {out.shape}"
        )
    if not 2 <= bins <= MAX_BINS or not 2 <= calibration_bins <= MAX_BINS:
        raise _ERR(f"build_reference: bins must be in 2..{MAX_BINS}")
    flat = xa.reshape(n, -1)
    view = flat if embeddings is None else np.asarray(embeddings, dtype=np.float64).reshape(n, -1)
    if not np.all(np.isfinite(view)) or not np.all(np.isfinite(out)):
        raise _ERR("build_reference: reference inputs and outputs must be finite")
    if projection is not None:
        want = "input" if embeddings is None else "embedding"
        if projection.source != want or len(projection.mean) != view.shape[1] or (
            want == "embedding" and projection.output != embedding_output
        ):
            raise _ERR(
                f"build_reference: the projection kept watches {projection.source} "
                f"{projection.output or ''} of width {len(projection.mean)}; the reference "
                f"data is {want} {embedding_output or ''} of width {view.shape[1]}"
            )
        if projection.whiten is not None:  # the covariance of this data, around its mean
            mean = view.mean(axis=0)
            _, sv, vt = np.linalg.svd(view - mean, full_matrices=False)
            projection = Projection(
                source=projection.source,
                mean=mean,
                components=projection.components,
                output=projection.output,
                whiten=_whitening(sv, vt, n, whiten),
            )
        monitored = projection.apply(view)
        names = [f"pc{i}" for i in range(len(projection.components))]
    elif embeddings is not None or view.shape[1] > max_features:
        k = max(1, min(components, MAX_COMPONENTS, view.shape[1], n - 1))
        if k * view.shape[1] > MAX_PROJECTION_VALUES:
            raise _ERR(
                f"build_reference: a projection of {k} x {view.shape[1]} values exceeds "
                f"{MAX_PROJECTION_VALUES}"
            )
        mean = view.mean(axis=0)
        _, sv, vt = np.linalg.svd(view - mean, full_matrices=False)
        projection = Projection(
            source="input" if embeddings is None else "embedding",
            mean=mean,
            components=vt[:k].copy(),
            output=embedding_output,
            whiten=_whitening(sv, vt, n, whiten),
        )
        monitored = projection.apply(view)
        names = [f"pc{i}" for i in range(k)]
    else:
        monitored = view
        names = list(feature_names) if feature_names else [f"x{i}" for i in range(view.shape[1])]
        if len(names) != view.shape[1]:
            raise _ERR(f"build_reference: {len(names)} feature names for {view.shape[1]} features")
    features = tuple(_feature_ref(nm, monitored[:, i], bins, margin) for i, nm in enumerate(names))
    probs = softmax(out) if output_kind == "logits" else out
    k_cls = probs.shape[1]
    pred = probs.argmax(axis=1)
    names_c = tuple(classes) if classes else tuple(str(i) for i in range(k_cls))
    if len(names_c) != k_cls:
        raise _ERR(f"build_reference: {len(names_c)} class names for {k_cls} outputs")
    label_counts = calibration = acc = None
    if labels is not None:
        y = np.asarray(labels).astype(np.int64).reshape(-1)
        if len(y) != n or y.min() < 0 or y.max() >= k_cls:
            raise _ERR(f"build_reference: expected {n} labels in 0..{k_cls - 1}")
        label_counts = np.bincount(y, minlength=k_cls).astype(np.int64)
        correct = (pred == y).astype(np.float64)
        acc = _digit(float(correct.mean()))
        conf = probs.max(axis=1)
        edges = _equal_mass_edges(conf, calibration_bins)
        edges = edges[(edges > 0) & (edges < 1)]
        b = np.searchsorted(edges, conf, side="right")
        counts = np.bincount(b, minlength=len(edges) + 1).astype(np.int64)
        hits = np.bincount(b, weights=correct, minlength=len(edges) + 1)
        # a bin's accuracy with a Beta(1, 1) prior, so an empty or tiny bin is not 0 or 1
        rate = (hits + 1.0) / (counts + 2.0)
        iso = _pav(rate, counts.astype(np.float64) + 2.0)
        # rounding is monotone: the isotonic fit stays non-decreasing
        calibration = Calibration(edges=edges, accuracy=np.clip(_digits(iso), 0, 1),
                                  counts=counts)
    return MonitorReference(
        features=features,
        classes=names_c,
        class_counts=np.bincount(pred, minlength=k_cls).astype(np.int64),
        n=n,
        output_kind=output_kind,
        projection=projection,
        label_counts=label_counts,
        calibration=calibration,
        accuracy=acc,
    )
