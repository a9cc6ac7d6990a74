"""On-device personalization: a personal classifier head the device fits on its own labels.

The device keeps the labelled samples its delayed feedback produced (``FeedbackStore``: the
penultimate activations of each labelled prediction, for a model watched through its
``edgeloop_embedding`` output, and the class the served model predicted). :func:`fit_personal`
holds out every ``round(1/share)``-th sample, fits a softmax-regression head
(``logits = features @ weight + bias``, numpy only) on the rest and scores it and the served
fleet model on the held-out part. The agent serves with the head only when it is more accurate
there (``PersonalHead.serving``); otherwise the fleet model's own output is served.

The head is an artifact the device made, so no release key signs it. It is stored
(``STATE_DIR/personal/head.json``, 0600) with an HMAC-SHA256 over its bytes under a key derived
(HKDF-SHA256) from the device's private signing key, and bound to the sha256 of the base
bundle it was fitted on. :func:`load_personal` refuses a head whose MAC does not verify
(``SecurityError``) and reports one fitted on another base (``PersonalMismatch``); the agent
then serves with the fleet head and drops the file. The head never leaves the device: nothing
sends it; telemetry carries only ``personal_gain`` (held-out accuracy gain, within [-1, 1]) and
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
FORMAT = "edgeloop-personal-head/1"
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
    """How the personal head is fitted: full-batch gradient descent with momentum on the
    cross-entropy plus ``l2``; ``held_out`` share of the labelled samples scores it."""

    epochs: int = 300
    lr: float = 0.5
    l2: float = 1e-3
    held_out: float = 0.25
    min_samples: int = 20

    def __post_init__(self) -> None:
        checks = {
            "epochs": 1 <= self.epochs <= 100_000,
            "lr": np.isfinite(self.lr) and 0 < self.lr <= 10,
            "l2": np.isfinite(self.l2) and 0 <= self.l2 <= 10,
            "held_out": np.isfinite(self.held_out) and 0.05 <= self.held_out <= 0.5,
            "min_samples": 4 <= self.min_samples <= 1_000_000,
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise InputError(
                f"personalize: {bad[0]}={getattr(self, bad[0])!r} out of range (epochs "
                "1..100000, 0<lr<=10, 0<=l2<=10, held_out 0.05..0.5, min_samples >= 4)"
            )


@dataclass(frozen=True)
class PersonalHead:
    """A head fitted on this device, bound to the base bundle ``base_sha256``."""

    weight: F32  # (features, classes)
    bias: F32  # (classes,)
    base_sha256: str
    embedding: str  # the base model's output the head reads
    output: str  # the base model's class output it replaces
    probabilities: bool  # the class output holds probabilities (else logits)
    fleet_accuracy: float  # the served fleet model on the held-out samples
    personal_accuracy: float  # this head on the same samples
    n_train: int
    n_held_out: int
    created: float

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
        object.__setattr__(self, "weight", w)
        object.__setattr__(self, "bias", b)

    @property
    def gain(self) -> float:
        """Held-out accuracy of the head minus the fleet model's, within [-1, 1]."""
        return self.personal_accuracy - self.fleet_accuracy

    @property
    def serving(self) -> bool:
        """Whether the agent serves with it: only when it beats the fleet head."""
        return self.gain > 0

    def apply(self, outputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """The base model's outputs with the class output replaced by this head's."""
        out = dict(outputs)
        feats = np.asarray(out[self.embedding], np.float32)
        feats = feats.reshape(len(feats), -1)
        if feats.shape[1] != self.weight.shape[0]:
            raise DataError(f"personal head: expects {self.weight.shape[0]} features, "
                            f"got {feats.shape[1]}")
        logits = feats @ self.weight + self.bias
        old = np.asarray(out[self.output])
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
    another base bundle than ``base_sha256``."""
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
        if body["format"] != FORMAT:
            raise SecurityError(f"personal head: format {body['format']!r:.40}, expected {FORMAT}")
        d, k = (int(v) for v in body["shape"])
        weight = np.frombuffer(base64.b64decode(body["weight"]), "<f4").reshape(d, k)
        bias = np.frombuffer(base64.b64decode(body["bias"]), "<f4").reshape(k)
        head = PersonalHead(
            weight.astype(np.float32), bias.astype(np.float32), str(body["base_sha256"]),
            str(body["embedding"]), str(body["output"]), bool(body["probabilities"]),
            float(body["fleet_accuracy"]), float(body["personal_accuracy"]),
            int(body["n_train"]), int(body["n_held_out"]), float(body["created"]),
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
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    out: npt.NDArray[np.floating] = e / e.sum(axis=1, keepdims=True)
    return out


def _fit(x: F32, y: I64, n_classes: int, cfg: PersonalConfig) -> tuple[F32, F32]:
    """Softmax regression by full-batch gradient descent with momentum on standardized
    features (folded back into the weights), in float64."""
    x64 = x.astype(np.float64)
    mu, sd = x64.mean(axis=0), x64.std(axis=0) + 1e-6
    z = (x64 - mu) / sd
    onehot = np.eye(n_classes)[y]
    w = np.zeros((x.shape[1], n_classes))
    b = np.log(np.maximum(onehot.mean(axis=0), 1e-3))  # start at the class prior
    vw, vb = np.zeros_like(w), np.zeros_like(b)
    for _ in range(cfg.epochs):
        err = (_softmax(z @ w + b) - onehot) / len(z)
        vw = 0.9 * vw - cfg.lr * (z.T @ err + cfg.l2 * w)
        vb = 0.9 * vb - cfg.lr * err.sum(axis=0)
        w += vw
        b += vb
    weight = w / sd[:, None]
    bias = b - mu @ weight
    with np.errstate(over="ignore"):
        w32, b32 = weight.astype(np.float32), bias.astype(np.float32)
    if not (np.isfinite(w32).all() and np.isfinite(b32).all()):
        raise DataError(f"personalize: the head diverged (lr={cfg.lr}); use a smaller lr")
    return w32, b32


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
    config: PersonalConfig | None = None,
) -> PersonalHead:
    """Fit a personal head on labelled features; ``predicted`` is what the served fleet model
    predicted for each sample, so both are scored on the same held-out samples."""
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
    y, p = y.astype(np.int64), p.astype(np.int64)
    every = max(2, round(1 / cfg.held_out))
    held = np.arange(len(y)) % every == every - 1
    w, b = _fit(x[~held], y[~held], n_classes, cfg)
    mine = float(np.mean((x[held] @ w + b).argmax(axis=1) == y[held]))
    fleet = float(np.mean(p[held] == y[held]))
    return PersonalHead(w, b, base_sha256, embedding, output, probabilities, fleet, mine,
                        int((~held).sum()), int(held.sum()), time.time())
