"""Fixtures for the agent tests: real signed, encrypted bundles of tiny ONNX models."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from edgeloop.artifacts import ModelCard, sha256_bytes
from edgeloop.bundle import Trust, pack
from edgeloop.protocol import Assignment, iso_time


def _model(kind: str, scale: float, n_weights: int = 0) -> bytes:
    """y = x * scale (+ a big unused-looking initializer for size); kinds break in ways."""
    from onnx_writer import FLOAT, model_bytes

    inits = {"s": np.array([scale], dtype=np.float32)}
    nodes = [("Mul", ["x", "s"], ["m"])]
    if kind == "fragile":  # passes its self-test (n=1), fails at run time for n != 1
        inits["shape"] = np.array([1, 4], dtype=np.int64)
        nodes.append(("Reshape", ["m", "shape"], ["y"]))
    else:
        nodes.append(("Identity", ["m"], ["y"]))
    outputs = [("y", FLOAT, ["n", 4])]
    if n_weights:
        inits["pad"] = np.zeros(n_weights, dtype=np.float32)
        nodes.append(("Identity", ["pad"], ["pad_out"]))
        outputs.append(("pad_out", FLOAT, [n_weights]))
    return model_bytes(nodes, [("x", FLOAT, ["n", 4])], outputs, inits)


def _resign_with_wrong_selftest(bundle: bytes, key: Ed25519PrivateKey) -> bytes:
    """A correctly signed release whose model does not compute its self-test outputs."""
    from edgeloop.bundle import canonical_json, parse_container
    from edgeloop.bundle._format import build_container, sign_envelope
    from edgeloop.bundle._selftest import decode_array, encode_array

    c = parse_container(bundle)
    manifest = json.loads(c.manifest)
    want = decode_array(manifest["selftest"]["outputs"]["y"], "y")
    manifest["selftest"]["outputs"]["y"] = encode_array(want + 1.0)
    body = canonical_json(manifest)
    return build_container(body, sign_envelope(body, [key]), c.payload)


@pytest.fixture(scope="session")
def release_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture(scope="session")
def trust(release_key: Ed25519PrivateKey) -> Trust:
    return Trust.from_keys([release_key.public_key()])


BundleMaker = Callable[..., bytes]


@pytest.fixture
def make_bundle(release_key: Ed25519PrivateKey) -> BundleMaker:
    """``make_bundle(recipient_pub, version, kind="good", scale=None, name="m")`` -> bytes."""

    def _make(
        recipient: X25519PublicKey,
        version: int,
        kind: str = "good",
        scale: float | None = None,
        name: str = "m",
        n_weights: int = 0,
    ) -> bytes:
        model = _model(kind, float(version if scale is None else scale), n_weights)
        card = ModelCard(name=name, sha256=sha256_bytes(model))
        bundle = pack(model, card, version, release_key, [recipient])
        if kind == "wrong-selftest":
            bundle = _resign_with_wrong_selftest(bundle, release_key)
        return bundle

    return _make


@pytest.fixture
def assignment_for() -> Callable[..., Assignment]:
    """``assignment_for(bundle, version, rollback=False, device_id="d-1")``."""

    def _make(
        bundle: bytes, version: int, rollback: bool = False, name: str = "m", **kw: Any
    ) -> Assignment:
        now = datetime.now(timezone.utc)
        return Assignment(
            device_id=kw.get("device_id", "d-1"),
            model=name,
            version=version,
            variant=kw.get("variant", "fp32"),
            target=f"{name}/{version}/{name}-{version}.elb",
            sha256=sha256_bytes(bundle),
            length=len(bundle),
            issued_at=iso_time(now),
            expires_at=iso_time(now + timedelta(hours=1)),
            rollback=rollback,
        )

    return _make


@pytest.fixture
def x1() -> np.ndarray:
    return np.ones((1, 4), dtype=np.float32)


@pytest.fixture
def agent_dir(tmp_path: Path) -> Path:
    return tmp_path / "agent"
