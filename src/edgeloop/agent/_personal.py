"""On-device personalization: a personal classifier head the device fits on its own labels.

The device keeps the labelled samples its delayed feedback produced (``FeedbackStore``: the
penultimate activations of each labelled prediction, for a model watched through its
``edgeloop_embedding`` output, the class it served and the fleet model's class output).
:func:`fit_personal` fits a softmax-regression correction of the fleet head (numpy only):
served logits = the fleet model's logits + ``features @ weight + bias``, starting at zero (the
fleet head itself) and regularized toward it (L2-SP: ``strength/2 * ||correction||^2`` on
standardized features), so a few labels move the fleet head only as far as they support. The
strength is chosen by k-fold cross-validation on the device's labels; the head is scored
against the fleet model by nested cross-validation (every label predicted by a head that
neither trained on it nor chose its strength with it). The agent serves with the head only
when that out-of-fold gain is positive, and by at least ``min_evidence`` (1) in a paired sign
test: (labels it fixes - labels it breaks) / sqrt(fixed + broken), so that a gain of a label or
two on a device's noise does not replace the fleet head (``PersonalHead.serving``, ``.why``);
otherwise the fleet model's own output is served. ``PersonalConfig(anchored=False)`` fits a
head from scratch instead (the earlier method, kept for comparison).

The head is an artifact the device made, so no release key signs it. It is stored
(``STATE_DIR/personal/head.json``, 0600) with an HMAC-SHA256 over its bytes under a key derived
(HKDF-SHA256) from the device's private signing key, and bound to the sha256 of the base
bundle it was fitted on. :func:`load_personal` refuses a head whose MAC does not verify
(``SecurityError``) and reports one fitted on another base (``PersonalMismatch``); the agent
then serves with the fleet head and drops the file. The head never leaves the device: nothing
sends it; telemetry carries only ``personal_gain`` (out-of-fold accuracy gain, in [-1, 1]) and
``personal_active`` (0 or 1).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from edgeloop.errors import DataError, InputError, SecurityError

__all__ = [
    "PersonalConfig",
    "PersonalHead",
    "PersonalMismatch",
    "fit_personal",
    "load_personal",
    "personal_key",
]

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]
FORMAT = "edgeloop-personal-head/2"
FORMAT_V1 = "edgeloop-personal-head/1"  # heads from scratch, before anchoring
MAX_FEATURES = 1 << 16
MAX_CLASSES = 4096
MAX_FILE = 64 << 20


class PersonalMismatch(Exception):  # noqa: N818 - a condition, not a failure
    """The stored head was fitted on another base bundle (the base version changed)."""


def personal_key(signing_key: Ed25519PrivateKey) -> bytes:
    """The device-held MAC key: HKDF-SHA256 of the device's private signing key (0600 in
    ``keys/``), so it never exists anywhere the signing key does not."""
    raw = signing_key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )
    return HKDF(hashes.SHA256(), 32, salt=None, info=b"edgeloop personal head v1").derive(raw)


@dataclass(frozen=True)
class PersonalConfig:
    """How the personal head is fitted. ``anchored`` (the default): the head starts from the
    fleet head and is regularized toward it (L2-SP: ``strength/2 * ||head - fleet head||^2``
    on standardized features); False fits it from scratch (toward zero weights and the class
    prior). The strength is chosen among ``strengths`` by ``folds``-fold cross-validation on
    the device's labels; ``epochs`` of accelerated full-batch gradient descent per fit."""

    epochs: int = 100
    strengths: tuple[float, ...] = (30.0, 3.0, 0.3, 0.03)
    folds: int = 4
    anchored: bool = True
    min_samples: int = 20
    min_evidence: float = 1.0  # serve only when (fixed - broken) / sqrt(fixed + broken) >= it

    def __post_init__(self) -> None:
        checks = {
            "epochs": 1 <= self.epochs <= 100_000,
            "strengths": 1 <= len(self.strengths) <= 16 and all(
                isinstance(v, int | float) and np.isfinite(v) and 0 < v <= 1e6
                for v in self.strengths),
            "folds": 2 <= self.folds <= 20,
            "min_samples": 4 <= self.min_samples <= 1_000_000,
            "min_evidence": np.isfinite(self.min_evidence) and 0 <= self.min_evidence <= 10,
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise InputError(
                f"personalize: {bad[0]}={getattr(self, bad[0])!r} out of range (epochs "
                "1..100000, 1..16 strengths each in (0, 1e6], folds 2..20, min_samples >= 4, "
                "min_evidence 0..10)"
            )
        if self.min_samples < self.folds * 2:
            raise InputError(f"personalize: min_samples={self.min_samples} below 2 per fold "
                             f"({self.folds} folds)")


@dataclass(frozen=True)
class PersonalHead:
    """A head fitted on this device, bound to the base bundle ``base_sha256``. Anchored: its
    class scores are the fleet model's logits plus ``features @ weight + bias`` (the fleet head
    moved by the device's labels); else ``features @ weight + bias`` alone."""

    weight: F32  # (features, classes)
    bias: F32  # (classes,)
    base_sha256: str
    embedding: str  # the base model's output the head reads
    output: str  # the base model's class output it replaces
    probabilities: bool  # the class output holds probabilities (else logits)
    fleet_accuracy: float  # the fleet model on the device's labels
    personal_accuracy: float  # this head's way of fitting, scored out of fold on the same labels
    n_train: int  # labels the served head was fitted on
    n_held_out: int  # labels scored out of fold
    created: float
    anchored: bool = False  # a correction of the fleet head (else a head of its own)
    strength: float = 0.0  # the L2-SP strength cross-validation chose
    evidence: float = 0.0  # paired sign test out of fold: (fixed - broken) / sqrt(fixed + broken)
    min_evidence: float = 0.0  # the evidence it needs to serve

    def __post_init__(self) -> None:
        w, b = np.asarray(self.weight, np.float32), np.asarray(self.bias, np.float32)
        if w.ndim != 2 or not (1 <= w.shape[0] <= MAX_FEATURES and 2 <= w.shape[1] <= MAX_CLASSES):
            raise DataError(f"personal head: weight shape {w.shape} is not (features, classes)")
        if b.shape != (w.shape[1],) or not (np.isfinite(w).all() and np.isfinite(b).all()):
            raise DataError("personal head: bias shape or values invalid")
        if len(self.base_sha256) != 64:
            raise DataError("personal head: base_sha256 is not a sha256")
        for name in ("fleet_accuracy", "personal_accuracy"):
            v = getattr(self, name)
            if not (isinstance(v, float) and 0.0 <= v <= 1.0):
                raise DataError(f"personal head: {name} {v!r} not within [0, 1]")
        if not (np.isfinite(self.strength) and 0 <= self.strength <= 1e6):
            raise DataError(f"personal head: strength {self.strength!r} not within [0, 1e6]")
        if not (np.isfinite(self.evidence) and np.isfinite(self.min_evidence)
                and abs(self.evidence) <= 1e4 and 0 <= self.min_evidence <= 10):
            raise DataError("personal head: evidence values invalid")
        object.__setattr__(self, "weight", w)
        object.__setattr__(self, "bias", b)

    @property
    def gain(self) -> float:
        """Held-out accuracy of the head minus the fleet model's, within [-1, 1]."""
        return self.personal_accuracy - self.fleet_accuracy

    @property
    def serving(self) -> bool:
        """Whether the agent serves with it: only when it beats the fleet head out of fold,
        by at least ``min_evidence`` in a paired sign test (the labels it fixes against the
        ones it breaks), so a gain that is only noise does not replace the fleet head."""
        return self.gain > 0 and self.evidence >= self.min_evidence

    @property
    def why(self) -> str:
        """Why the device serves with it, or keeps the fleet head, in one line."""
        verdict = "serving the personal head" if self.serving else "keeping the fleet head"
        return (f"{verdict}: out-of-fold accuracy {self.personal_accuracy:.3f} vs the fleet "
                f"head's {self.fleet_accuracy:.3f} on {self.n_held_out} labels (gain "
                f"{self.gain:+.3f}, evidence {self.evidence:.2f} of {self.min_evidence:g} "
                f"needed, {'anchored' if self.anchored else 'from scratch'}, "
                f"strength {self.strength:g})")

    def scores(self, features: npt.ArrayLike, fleet: npt.ArrayLike | None = None
               ) -> npt.NDArray[np.float64]:
        """This head's class logits for ``features`` (n, d); anchored heads need the fleet
        model's class output ``fleet`` (n, k) for the same samples."""
        feats = np.asarray(features, np.float32)
        feats = feats.reshape(len(feats), -1)
        if feats.shape[1] != self.weight.shape[0]:
            raise DataError(f"personal head: expects {self.weight.shape[0]} features, "
                            f"got {feats.shape[1]}")
        z = (feats @ self.weight + self.bias).astype(np.float64)
        if self.anchored:
            if fleet is None:
                raise DataError("personal head: an anchored head needs the fleet class output")
            base = _fleet_logits(fleet, self.probabilities)
            if base.shape != z.shape:
                raise DataError(f"personal head: fleet output {base.shape}, expected {z.shape}")
            z = z + base
        return z

    def apply(self, outputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """The base model's outputs with the class output replaced by this head's."""
        out = dict(outputs)
        old = np.asarray(out[self.output])
        logits = self.scores(out[self.embedding], old.reshape(len(old), -1))
        new = _softmax(logits) if self.probabilities else logits
        out[self.output] = new.astype(old.dtype, copy=False).reshape(old.shape)
        return out

    # --- storage -------------------------------------------------------------------------
    def to_bytes(self, key: bytes) -> bytes:
        body = {
            "format": FORMAT,
            "base_sha256": self.base_sha256,
            "embedding": self.embedding,
            "output": self.output,
            "probabilities": self.probabilities,
            "fleet_accuracy": self.fleet_accuracy,
            "personal_accuracy": self.personal_accuracy,
            "n_train": self.n_train,
            "n_held_out": self.n_held_out,
            "created": self.created,
            "anchored": self.anchored,
            "strength": self.strength,
            "evidence": self.evidence,
            "min_evidence": self.min_evidence,
            "shape": list(self.weight.shape),
            "weight": base64.b64encode(self.weight.astype("<f4").tobytes()).decode(),
            "bias": base64.b64encode(self.bias.astype("<f4").tobytes()).decode(),
        }
        payload = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
        mac = hmac.new(key, payload, hashlib.sha256).hexdigest()
        return json.dumps({"payload": payload.decode(), "hmac_sha256": mac}).encode()


def load_personal(data: bytes, key: bytes, base_sha256: str) -> PersonalHead:
    """The stored head, verified: ``SecurityError`` when its MAC does not verify under this
    device's key (tampered, or another device's), ``PersonalMismatch`` when it was fitted on
    another base bundle than ``base_sha256``. Heads stored by the previous format (from
    scratch only) still load."""
    if len(data) > MAX_FILE:
        raise SecurityError(f"personal head: {len(data)} bytes, more than {MAX_FILE}")
    try:
        outer = json.loads(data)
        payload = outer["payload"].encode()
        mac = bytes.fromhex(outer["hmac_sha256"])
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise SecurityError(f"personal head: not a stored head ({type(e).__name__})") from e
    want = hmac.new(key, payload, hashlib.sha256).digest()
    if not hmac.compare_digest(mac, want):
        raise SecurityError("personal head: the HMAC does not verify under this device's key "
                            "(tampered, or made by another device)")
    try:
        body = json.loads(payload)
        if body["format"] not in (FORMAT, FORMAT_V1):
            raise SecurityError(f"personal head: format {body['format']!r:.40}, expected {FORMAT}")
        d, k = (int(v) for v in body["shape"])
        weight = np.frombuffer(base64.b64decode(body["weight"]), "<f4").reshape(d, k)
        bias = np.frombuffer(base64.b64decode(body["bias"]), "<f4").reshape(k)
        head = PersonalHead(
            weight.astype(np.float32), bias.astype(np.float32), str(body["base_sha256"]),
            str(body["embedding"]), str(body["output"]), bool(body["probabilities"]),
            float(body["fleet_accuracy"]), float(body["personal_accuracy"]),
            int(body["n_train"]), int(body["n_held_out"]), float(body["created"]),
            bool(body.get("anchored", False)), float(body.get("strength", 0.0)),
            float(body.get("evidence", 0.0)), float(body.get("min_evidence", 0.0)),
        )
    except (ValueError, KeyError, TypeError, DataError) as e:
        raise SecurityError(f"personal head: malformed ({e})") from e
    if not hmac.compare_digest(head.base_sha256, base_sha256):
        raise PersonalMismatch(
            f"personal head was fitted on base {head.base_sha256[:12]}, the active base is "
            f"{base_sha256[:12]}"
        )
    return head


def _softmax(z: npt.NDArray[np.floating]) -> npt.NDArray[np.floating]:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    out: npt.NDArray[np.floating] = e / e.sum(axis=-1, keepdims=True)
    return out


def _fleet_logits(fleet: npt.ArrayLike, probabilities: bool) -> npt.NDArray[np.float64]:
    """The fleet model's class logits (up to a per-sample constant, which softmax ignores)."""
    f = np.asarray(fleet, np.float64)
    f = f.reshape(len(f), -1)
    if not np.isfinite(f).all():
        raise DataError("personal head: fleet class output not all finite")
    return np.log(np.clip(f, 1e-30, None)) if probabilities else f


def _fit(x: npt.NDArray[np.float64], base: npt.NDArray[np.float64], y: I64, n_classes: int,
         strengths: npt.NDArray[np.float64], epochs: int
         ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Minimize ``CE(softmax(base + x @ W + b), y) + s/2 * (||W'||^2 + ||b||^2)`` for every
    strength ``s`` at once (W' the weights on standardized features), starting at W = b = 0:
    Nesterov-accelerated full-batch gradient descent, step 1/L. The optimum's weights lie in
    the span of the samples, so the descent runs in that (at most n-dimensional) basis.
    Returns (weights (S, d, k), biases (S, k)) on the raw features."""
    n, d = x.shape
    mu, sd = x.mean(axis=0), x.std(axis=0)
    sd = np.where(sd > 1e-6, sd, 1.0)
    z = (x - mu) / sd
    if d > n:  # the span of the samples: z = u s vt, its basis v = z.T u / s, z @ v = u s
        ev, u = np.linalg.eigh(z @ z.T)
        keep = ev > max(float(ev[-1]), 1e-12) * 1e-9
        sv = np.sqrt(ev[keep])
        basis: npt.NDArray[np.float64] | None = (z.T @ u[:, keep]) / sv
        z = u[:, keep] * sv
        top = float(ev[-1])
    else:
        basis = None
        top = float(np.linalg.eigvalsh(z.T @ z)[-1]) if d else 0.0
    a = np.hstack([z, np.ones((n, 1))])
    m, k, n_s = a.shape[1], n_classes, len(strengths)
    onehot = np.eye(k)[y][:, None, :]
    s = np.repeat(strengths, k)  # every strength's heads side by side: columns (S * k)
    step = 1.0 / (0.5 * (top + n) / n + s)  # 1 / smoothness, with ||a||^2 <= ||z||^2 + n
    theta = np.zeros((m, n_s * k))
    prev = theta.copy()
    for t in range(epochs):
        look = theta + (t / (t + 3)) * (theta - prev)
        err = _softmax(base[:, None, :] + (a @ look).reshape(n, n_s, k)) - onehot
        grad = a.T @ err.reshape(n, n_s * k) / n + s * look
        prev, theta = theta, look - step * grad
    w_std = theta[:-1].reshape(m - 1, n_s, k).transpose(1, 0, 2)
    bias = theta[-1].reshape(n_s, k)
    if basis is not None:
        w_std = basis @ w_std
    weight = w_std / sd[:, None]
    return weight, bias - np.einsum("d,sdk->sk", mu, weight)


def _predict(x: npt.NDArray[np.float64], base: npt.NDArray[np.float64],
             weight: npt.NDArray[np.float64], bias: npt.NDArray[np.float64]
             ) -> npt.NDArray[np.float64]:
    """(S, n, k) logits of every strength's head."""
    out: npt.NDArray[np.float64] = base + x @ weight + bias[:, None, :]
    return out


def _folds(n: int, k: int) -> npt.NDArray[np.int64]:
    return np.arange(n, dtype=np.int64) % k


def _choose(x: npt.NDArray[np.float64], base: npt.NDArray[np.float64], y: I64,
            n_classes: int, cfg: PersonalConfig, k: int) -> int:
    """The index of the strength with the best ``k``-fold accuracy on (x, y); ties go to the
    lower cross-entropy, then to the stronger pull toward the fleet head."""
    grid = np.asarray(cfg.strengths, np.float64)
    folds = _folds(len(y), k)
    correct = np.zeros(len(grid))
    loss = np.zeros(len(grid))
    for f in range(k):
        tr, te = folds != f, folds == f
        w, b = _fit(x[tr], base[tr], y[tr], n_classes, grid, cfg.epochs)
        z = _predict(x[te], base[te], w, b)
        correct += (z.argmax(axis=2) == y[te]).sum(axis=1)
        p = _softmax(z)[:, np.arange(te.sum()), y[te]]
        loss -= np.log(np.clip(p, 1e-12, None)).sum(axis=1)
    order = sorted(range(len(grid)), key=lambda i: (-correct[i], loss[i], -grid[i]))
    return order[0]


def fit_personal(
    features: npt.ArrayLike,
    labels: npt.ArrayLike,
    predicted: npt.ArrayLike,
    *,
    n_classes: int,
    base_sha256: str,
    embedding: str,
    output: str,
    probabilities: bool,
    fleet: npt.ArrayLike | None = None,
    config: PersonalConfig | None = None,
) -> PersonalHead:
    """Fit a personal head on labelled features. ``fleet``: the fleet model's class output
    (probabilities or logits, as ``probabilities`` says) for each sample, which an anchored
    head starts from and is pulled toward; the fleet model's accuracy is scored from it (else
    from ``predicted``, the class the fleet model predicted).

    The L2-SP strength is chosen by cross-validation on the labels; the head is scored by
    nested cross-validation (each fold's strength chosen on the other folds, the fold
    predicted by a head that never saw it), against the fleet model on the same labels, and
    the served head is then fitted on all of them with the strength chosen on all of them."""
    cfg = config or PersonalConfig()
    x = np.asarray(features, np.float32)
    y = np.asarray(labels)
    p = np.asarray(predicted)
    if x.ndim != 2 or len(x) != len(y) or y.shape != p.shape or y.ndim != 1:
        raise DataError(f"personalize: features {x.shape}, labels {y.shape} and predictions "
                        f"{p.shape} do not line up")
    if len(y) < cfg.min_samples:
        raise DataError(f"personalize: {len(y)} labelled samples, at least {cfg.min_samples} "
                        "needed (labels come from delayed feedback)")
    if not np.isfinite(x).all():
        raise DataError("personalize: features not all finite")
    if y.min() < 0 or y.max() >= n_classes:
        raise DataError(f"personalize: labels outside 0..{n_classes - 1}")
    y = y.astype(np.int64)
    x64 = x.astype(np.float64)
    if fleet is not None:
        base = _fleet_logits(fleet, probabilities)
        if base.shape != (len(y), n_classes):
            raise DataError(f"personalize: fleet output {base.shape}, expected "
                            f"({len(y)}, {n_classes})")
        fleet_pred = base.argmax(axis=1)
    elif cfg.anchored:
        raise DataError("personalize: an anchored head needs the fleet model's class output "
                        "for each labelled sample")
    else:
        fleet_pred = p.astype(np.int64)
    if not cfg.anchored:  # from scratch: start at the class prior of the labels
        prior = np.log(np.maximum(np.bincount(y, minlength=n_classes) / len(y), 1e-3))
        base = np.broadcast_to(prior, (len(y), n_classes)).copy()
    grid = np.asarray(cfg.strengths, np.float64)
    folds = _folds(len(y), cfg.folds)
    oof = np.zeros(len(y), np.int64)
    for f in range(cfg.folds):  # nested cross-validation: the out-of-fold accuracy
        tr, te = folds != f, folds == f
        i = _choose(x64[tr], base[tr], y[tr], n_classes, cfg, cfg.folds - 1)
        w, b = _fit(x64[tr], base[tr], y[tr], n_classes, grid[i : i + 1], cfg.epochs)
        oof[te] = _predict(x64[te], base[te], w, b)[0].argmax(axis=1)
    i = _choose(x64, base, y, n_classes, cfg, cfg.folds)
    w, b = _fit(x64, base, y, n_classes, grid[i : i + 1], cfg.epochs)
    weight, bias = w[0], b[0]
    if not cfg.anchored:
        bias = bias + base[0]
    with np.errstate(over="ignore"):
        w32, b32 = weight.astype(np.float32), bias.astype(np.float32)
    if not (np.isfinite(w32).all() and np.isfinite(b32).all()):
        raise DataError("personalize: the head diverged")
    mine = float(np.mean(oof == y))
    fleet_acc = float(np.mean(fleet_pred == y))
    fixed = int(np.sum((oof == y) & (fleet_pred != y)))
    broken = int(np.sum((oof != y) & (fleet_pred == y)))
    evidence = (fixed - broken) / max(1.0, float(np.sqrt(fixed + broken)))
    return PersonalHead(w32, b32, base_sha256, embedding, output, probabilities, fleet_acc,
                        mine, len(y), len(y), time.time(), cfg.anchored, float(grid[i]),
                        evidence, cfg.min_evidence)
