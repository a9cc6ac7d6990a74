"""Every step is timed interleaved with the original; a slower step says so in the report, the
CLI and the model card, and ``keep_faster`` (``--recipe auto``) keeps the faster model."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeloop.artifacts import ModelCard
from edgeloop.optimize import optimize
from edgeloop.optimize._passes import ModelState, PassContext, StepResult, register_pass


def _mlp() -> onnx.ModelProto:
    w = numpy_helper.from_array(np.eye(64, dtype=np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 64])],
        [w],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@register_pass("test_slow_down", "onnx")
def _slow_down(
    state: ModelState, params: Mapping[str, Any], ctx: PassContext
) -> tuple[ModelState, StepResult]:
    """The same function, computed with 200 extra 256x256 identity MatMuls: surely slower."""
    assert state.onnx_path is not None
    model = onnx.load(str(state.onnx_path))
    g = model.graph
    eye = numpy_helper.from_array(np.eye(256, dtype=np.float32), "eye")
    pad = numpy_helper.from_array(np.eye(64, 256, dtype=np.float32), "up")
    down = numpy_helper.from_array(np.eye(256, 64, dtype=np.float32), "down")
    g.initializer.extend([eye, pad, down])
    out = g.node[-1].output[0]
    g.node[-1].output[0] = "h0"
    nodes = [helper.make_node("MatMul", ["h0", "up"], ["u0"])]
    for i in range(200):
        nodes.append(helper.make_node("MatMul", [f"u{i}", "eye"], [f"u{i + 1}"]))
    nodes.append(helper.make_node("MatMul", ["u200", "down"], [out]))
    g.node.extend(nodes)
    dest = ctx.workdir / "slow.onnx"
    onnx.save(model, str(dest))
    return ModelState("onnx", onnx_path=dest), StepResult("test_slow_down", {}, {}, [])


@pytest.fixture
def slow_recipe(tmp_path: Path) -> tuple[Path, Path]:
    src = tmp_path / "mlp.onnx"
    onnx.save(_mlp(), str(src))
    recipe = tmp_path / "slow.yaml"
    recipe.write_text("name: slow\npasses:\n  - test_slow_down\n")
    return src, recipe


def test_a_slower_step_says_so_in_report_and_card(
    slow_recipe: tuple[Path, Path], tmp_path: Path
) -> None:
    # prepare
    src, recipe = slow_recipe
    # act
    card = optimize(src, recipe, out_dir=tmp_path / "out")
    # assert
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    step = report["steps"][-1]
    assert step["speedup"] < 0.97
    assert any("slower than the original" in w and "interleaved" in w for w in step["warnings"])
    assert any("slower than the original" in w for w in card.extra["warnings"])
    assert (
        "none"
        not in (tmp_path / "out" / "report.html").read_text().split("<h2>Warnings</h2>")[1][:40]
    )
    assert card.metrics["speedup"] < 0.97
    saved = ModelCard.load(tmp_path / "out" / "model_card.json")
    assert saved.extra["warnings"] == card.extra["warnings"]


def test_keep_faster_keeps_the_original(slow_recipe: tuple[Path, Path], tmp_path: Path) -> None:
    # prepare
    src, recipe = slow_recipe
    # act
    card = optimize(src, recipe, out_dir=tmp_path / "out", keep_faster=True)
    # assert: the written model is the original, and the card says why
    written = onnx.load(str(tmp_path / "out" / "model.onnx"))
    assert [n.op_type for n in written.graph.node] == ["MatMul"]
    assert any("kept the original" in w for w in card.extra["warnings"])
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["steps"][-1]["step"] == "kept original"
