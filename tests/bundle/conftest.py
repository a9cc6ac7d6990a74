"""Fixtures for bundle tests: a tiny ONNX model, keys, a trust root and a packed bundle."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

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


def make_model(n_in: int = 4, n_out: int = 3, seed: int = 0) -> bytes:
    """y = relu(x @ W + b): small, deterministic, with a dynamic batch axis."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((n_in, n_out)).astype(np.float32)
    b = rng.standard_normal(n_out).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "W"], ["h"]),
            helper.make_node("Add", ["h", "b"], ["z"]),
            helper.make_node("Relu", ["z"], ["y"]),
        ],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", n_in])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", n_out])],
        [numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return bytes(model.SerializeToString())


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
