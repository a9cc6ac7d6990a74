"""``calibrate``: fit the cost model's latency coefficients on whole models timed on the target.

The kernel figures of a profile are best runs of single kernels; a whole model pays more (the
operator overheads between kernels, caches shared with its neighbours, small convolutions and
depthwise ones slower per MAC than the measured shapes, large ones faster, QDQ fusion) and a
benchmark compares medians, not bests. So :func:`calibrate` builds a fixed set of calibration
models (the zoo's CNN, MobileNetV1, MBConv, 1-D CNN, autoencoder and transformer at shapes
of their own, fp32 and int8), times them on the target (median of interleaved rounds on the
profile's thread count), and fits the coefficients of :data:`LATENCY_FEATURES` by
non-negative least squares on relative error, pulled toward the uncalibrated prior as hard as
cross-validation on the calibration models themselves says (:func:`choose_strength`).

Why NNLS on interpretable features and not a black box (gradient boosting, an MLP, nn-Meter's
random forests per kernel): the calibration set is a few dozen models timed in about a minute
on the target itself, far too few to train a flexible regressor without it memorising them;
each coefficient here is a physical quantity (milliseconds per operator, a scale on a kernel
family's measured time) that must be non-negative, so NNLS cannot explain one model by
subtracting another's time, and a coefficient the calibration set says nothing about stays at
its prior (the ridge rows). The result can be read off the profile and checked by hand.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgeloop.analysis._estimate import (
    LATENCY_FEATURES,
    LATENCY_KEY,
    _Rates,
    latency_features,
    latency_prior,
)
from edgeloop.artifacts import DeviceProfile
from edgeloop.errors import InputError

__all__ = [
    "CalibrationModel",
    "calibrate",
    "choose_strength",
    "fit_latency",
    "fit_models",
    "time_models",
    "with_latency_coefficients",
]

# How strongly each coefficient is pulled toward its prior: the weight of one unit of
# (coefficient - prior) / scale against one unit of relative error of one model. Small: the
# data decide where they can; a feature no calibration model has stays at its prior.
PRIOR_STRENGTH = 0.05
# The unit of a coefficient whose prior is 0 and that is not a count of operators: ms per
# million int8 convolution taps (output pixels x kernel area)
FEATURE_UNITS = {"int8_taps": 1.0}


@dataclass(frozen=True)
class CalibrationModel:
    """One model to time: its file, the feeds to run it with, the shapes to price it at."""

    name: str
    path: Path
    feeds: dict[str, np.ndarray]
    precision: str
    family: str
    input_shapes: dict[str, tuple[int, ...]] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _prior_scale(prior: Mapping[str, float]) -> dict[str, float]:
    """The unit each coefficient's pull toward its prior is measured in: its prior where that
    is a real figure (overheads in ms), 1 for the unitless scales and 10 us for a count whose
    prior is 0."""
    out = {}
    for name in LATENCY_FEATURES:
        if name.endswith("_ms"):
            out[name] = 1.0
        elif name in FEATURE_UNITS:
            out[name] = FEATURE_UNITS[name]
        else:
            out[name] = max(prior.get(name, 0.0), 0.01)
    return out


def fit_latency(
    features: Sequence[Mapping[str, float]],
    measured_ms: Sequence[float],
    prior: Mapping[str, float],
    *,
    strength: float = PRIOR_STRENGTH,
) -> dict[str, float]:
    """Coefficients ``c >= 0`` minimising ``sum_i ((features_i . c - measured_i) / measured_i)^2
    + strength * sum_j ((c_j - prior_j) / scale_j)^2`` (non-negative least squares on the
    stacked system). ``features`` are :func:`latency_features` of each model, ``measured_ms``
    its median time, ``prior`` the coefficients to fall back on (missing names: 0)."""
    from scipy.optimize import nnls

    if len(features) != len(measured_ms):
        raise InputError(f"{len(features)} feature rows but {len(measured_ms)} measured times")
    if not features:
        raise InputError("no calibration models to fit on")
    if not (math.isfinite(strength) and strength > 0):
        raise InputError(f"strength must be a positive number, got {strength}")
    y = np.asarray(measured_ms, dtype=float)
    if not np.all(np.isfinite(y)) or np.any(y <= 0):
        raise InputError("measured times must be finite and positive")
    x = np.array([[float(f.get(n, 0.0)) for n in LATENCY_FEATURES] for f in features])
    if not np.all(np.isfinite(x)) or np.any(x < 0):
        raise InputError("features must be finite and non-negative")
    p = np.array([float(prior.get(n, 0.0)) for n in LATENCY_FEATURES])
    scale = _prior_scale(prior)
    s = np.array([scale[n] for n in LATENCY_FEATURES])
    root = math.sqrt(strength)
    a = np.vstack([x / y[:, None], np.diag(root / s)])
    b = np.concatenate([np.ones(len(y)), root * p / s])
    coef, _ = nnls(a, b, maxiter=50 * a.shape[1])
    return {n: float(c) for n, c in zip(LATENCY_FEATURES, coef, strict=True)}


# The pulls toward the prior :func:`choose_strength` tries (PRIOR_STRENGTH among them).
STRENGTHS = (0.001, 0.003, 0.01, 0.02, 0.05, 0.1, 0.3)


def _group(name: str) -> str:
    """A calibration model's shape, whatever its precision or sequence length: the models of
    one group leave the fit together in :func:`choose_strength` (an int8 model is its float
    source quantized, a sequence length the same weights)."""
    base = name.removesuffix("-int8")
    head, sep, tail = base.rpartition("-s")
    return head if sep and tail.isdigit() else base


def choose_strength(
    names: Sequence[str],
    features: Sequence[Mapping[str, float]],
    measured_ms: Sequence[float],
    prior: Mapping[str, float],
    strengths: Sequence[float] = STRENGTHS,
) -> tuple[float, dict[float, float]]:
    """The pull toward the prior that predicts unseen models best, by cross-validation on the
    calibration models alone: each group of models (:func:`_group`: a shape with its int8
    version and its sequence lengths) is priced by a fit on all the others, and the strength
    whose out-of-fold predictions are within +-20 % most often wins (ties: the smaller median
    relative error, then the stronger pull). Returns it and every strength's share within
    +-20 %. With fewer than three groups there is nothing to cross-validate: PRIOR_STRENGTH."""
    if not (len(names) == len(features) == len(measured_ms)):
        raise InputError("names, features and measured times differ in length")
    groups = sorted({_group(n) for n in names})
    if len(groups) < 3:
        return PRIOR_STRENGTH, {}
    scores: dict[float, tuple[float, float, float]] = {}
    for strength in strengths:
        errors = []
        for g in groups:
            fit_on = [i for i, n in enumerate(names) if _group(n) != g]
            coef = fit_latency(
                [features[i] for i in fit_on],
                [measured_ms[i] for i in fit_on],
                prior,
                strength=strength,
            )
            for i, n in enumerate(names):
                if _group(n) == g:
                    pred = sum(coef[k] * float(v) for k, v in features[i].items())
                    errors.append(abs(pred - measured_ms[i]) / measured_ms[i])
        within = float(np.mean([e <= 0.2 for e in errors]))
        scores[strength] = (within, -float(np.median(errors)), strength)
    best = max(scores, key=lambda k: scores[k])
    return best, {k: v[0] for k, v in scores.items()}


def with_latency_coefficients(
    profile: DeviceProfile, coef: Mapping[str, float], models: int
) -> DeviceProfile:
    """``profile`` with ``coef`` stored in its kernels (``lat:FEATURE``) and the number of
    models they were fitted on (``lat:models``); an earlier calibration's are replaced."""
    kernels = {k: v for k, v in (profile.kernels or {}).items() if not k.startswith(LATENCY_KEY)}
    for name in LATENCY_FEATURES:
        kernels[LATENCY_KEY + name] = round(float(coef[name]), 9)
    kernels[LATENCY_KEY + "models"] = float(models)
    return replace(profile, kernels=kernels)


def time_models(
    models: Sequence[CalibrationModel], *, threads: int | None, rounds: int, runs: int
) -> dict[str, list[float]]:
    """Milliseconds of every run of every model, timed in interleaved rounds (background load
    hits them alike) after a warm-up, on ``threads`` intra-op threads."""
    from edgeloop.runtime import Session

    sessions = [
        (m, Session(m.path, threads=threads, providers=["CPUExecutionProvider"])) for m in models
    ]
    for m, s in sessions:
        for _ in range(5):
            s.run_unchecked(m.feeds)
    times: dict[str, list[float]] = {m.name: [] for m in models}
    for _ in range(rounds):
        for m, s in sessions:
            for _ in range(runs):
                t0 = time.perf_counter()
                s.run_unchecked(m.feeds)
                times[m.name].append((time.perf_counter() - t0) * 1e3)
    return times


def fit_models(
    profile: DeviceProfile,
    models: Sequence[CalibrationModel],
    measured_ms: Mapping[str, float],
    *,
    strength: float | None = None,
) -> dict[str, float]:
    """:func:`fit_latency` on ``models`` priced on ``profile`` against ``measured_ms`` (by
    name), from the profile's uncalibrated prior; ``strength`` None: the pull toward the prior
    that cross-validation on these models chooses (:func:`choose_strength`)."""
    feats = [latency_features(m.path, profile, input_shapes=m.input_shapes) for m in models]
    prior = latency_prior(_Rates(profile))
    y = [measured_ms[m.name] for m in models]
    if strength is None:
        strength, _ = choose_strength([m.name for m in models], feats, y, prior)
    return fit_latency(feats, y, prior, strength=strength)


def calibrate(
    profile: DeviceProfile,
    models: Sequence[CalibrationModel],
    *,
    quick: bool = False,
    threads: int | None = None,
) -> DeviceProfile:
    """``profile`` (measured on this machine) with latency coefficients fitted here: the
    calibration ``models`` (``edgeloop.zoo.calibration_models``) timed in interleaved rounds on
    the profile's kernel thread count (``threads`` to override), their medians fitted
    (:func:`fit_latency`) at the pull toward the prior that cross-validation on them chooses
    (:func:`choose_strength`). ``quick``: fewer rounds. Raises :class:`InputError` for a profile
    that was not measured here (a built-in target) or no models."""
    if profile.source != "measured" or not profile.kernels:
        raise InputError(
            f"target {profile.name!r} has no measured kernels: calibrate a profile from "
            "`edgeloop profile` on the device itself"
        )
    if not models:
        raise InputError("no calibration models to fit on")
    kt = profile.extra.get("kernel_threads")
    n_threads = threads or (kt if isinstance(kt, int) else None)
    runs = time_models(models, threads=n_threads, rounds=5 if quick else 12, runs=3 if quick else 5)
    medians = {k: float(np.median(v)) for k, v in runs.items()}
    coef = fit_models(profile, models, medians)
    return with_latency_coefficients(profile, coef, len(models))
