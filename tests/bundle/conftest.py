"""Fixtures for bundle tests: a tiny ONNX model, keys, a trust root and a packed bundle."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgeloop.artifacts import LineageRef, ModelCard
from edgeloop.bundle import (
    Trust,
    canonical_json,
    generate_encryption_key,
    generate_signing_key,
    pack,
    parse_container,
)
from edgeloop.bundle._format import build_container, sign_envelope
from onnx_writer import FLOAT
from onnx_writer import model_bytes as write_model


def make_model(n_in: int = 4, n_out: int = 3, seed: int = 0) -> bytes:
    """y = relu(x @ W + b): small, deterministic, with a dynamic batch axis."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((n_in, n_out)).astype(np.float32)
    b = rng.standard_normal(n_out).astype(np.float32)
    return write_model(
        [("MatMul", ["x", "W"], ["h"]), ("Add", ["h", "b"], ["z"]), ("Relu", ["z"], ["y"])],
        [("x", FLOAT, ["N", n_in])],
        [("y", FLOAT, ["N", n_out])],
        {"W": w, "b": b},
    )


@pytest.fixture(scope="session")
def model_bytes() -> bytes:
    return make_model()


@pytest.fixture(scope="session")
def release_key() -> Any:
    return generate_signing_key()


@pytest.fixture(scope="session")
def device_key() -> Any:
    return generate_encryption_key()


@pytest.fixture(scope="session")
def trust(release_key: Any) -> Trust:
    return Trust.from_keys([release_key.public_key()])


@pytest.fixture(scope="session")
def card() -> ModelCard:
    return ModelCard(
        name="tiny",
        sha256="",
        architecture="mlp",
        lineage=(LineageRef(role="source_model", sha256="ab" * 32, name="tiny.pt"),),
        metrics={"accuracy": 0.9},
    )


@pytest.fixture(scope="session")
def bundle(model_bytes: bytes, card: ModelCard, release_key: Any, device_key: Any) -> bytes:
    # 64-byte chunks so the ~200-byte model spans several of them
    return pack(model_bytes, card, 3, release_key, [device_key.public_key()], chunk_size=64)


@pytest.fixture
def bundle_file(tmp_path: Path, bundle: bytes) -> Path:
    p = tmp_path / "tiny-3.elb"
    p.write_bytes(bundle)
    return p


@pytest.fixture
def resign() -> Callable[[bytes, Callable[[dict[str, Any]], None], Any], bytes]:
    """Edit a bundle's manifest and sign it again with ``key``: a validly signed variant."""

    def _resign(data: bytes, edit: Callable[[dict[str, Any]], None], key: Any) -> bytes:
        c = parse_container(data)
        manifest = json.loads(c.manifest)
        edit(manifest)
        body = canonical_json(manifest)
        return build_container(body, sign_envelope(body, [key]), bytes(c.payload))

    return _resign
