"""Registry fixtures: a registry on each engine, small real ONNX models, cards and bundles."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from edgeloop.artifacts import LineageRef, ModelCard, sha256_file
from edgeloop.registry import Registry


@pytest.fixture
def registry(db_url: str, tmp_path: Path) -> Iterator[Registry]:
    """A fresh :class:`~edgeloop.registry.Registry` on SQLite and on PostgreSQL."""
    reg = Registry(db_url, tmp_path / "data")
    try:
        yield reg
    finally:
        reg.close()


@pytest.fixture
def make_onnx(tmp_path: Path) -> Callable[..., Path]:
    """``make_onnx("a", 1.0)``: a real ONNX model ``y = x + bias``; each bias a new file hash."""
    import onnx
    from onnx import TensorProto, helper

    def _make(name: str = "model", bias: float = 1.0) -> Path:
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
        b = helper.make_tensor("b", TensorProto.FLOAT, [1], [bias])
        graph = helper.make_graph([helper.make_node("Add", ["x", "b"], ["y"])], name, [x], [y], [b])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        path = tmp_path / "models" / f"{name}.onnx"
        path.parent.mkdir(exist_ok=True)
        onnx.save(model, str(path))
        return path

    return _make


@pytest.fixture
def make_card() -> Callable[..., ModelCard]:
    """``make_card(path, name, [("source_model", sha), ...])``: a card describing ``path``."""

    def _make(
        path: Path, name: str, lineage: Sequence[tuple[str, str] | LineageRef] = ()
    ) -> ModelCard:
        refs = tuple(
            r if isinstance(r, LineageRef) else LineageRef(role=r[0], sha256=r[1]) for r in lineage
        )
        return ModelCard(
            name=name,
            sha256=sha256_file(path),
            architecture="add",
            metrics={"accuracy": 0.5},
            lineage=refs,
        )

    return _make


@pytest.fixture
def make_bundle(tmp_path: Path) -> Callable[..., Path]:
    """``make_bundle(model_path, card, version, name=..., requirements=...)``: a real .elb."""
    from edgeloop.bundle import generate_encryption_key, generate_signing_key, pack

    signing, device = generate_signing_key(), generate_encryption_key()

    def _make(
        model: Path,
        card: ModelCard,
        version: int,
        *,
        name: str | None = None,
        requirements: dict[str, object] | None = None,
        out: str | None = None,
    ) -> Path:
        data = pack(
            model.read_bytes(),
            card,
            version,
            signing,
            [device.public_key()],
            name=name,
            requirements=requirements,
        )
        path = tmp_path / "bundles" / (out or f"{name or card.name}-{version}.elb")
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(data)
        return path

    return _make
