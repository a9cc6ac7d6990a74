"""Models exported the way other toolchains do go through int8 without a traceback, with files
smaller than fp32, and without leaving temp files in the user's working directory."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeloop.errors import PassError
from edgeloop.optimize import optimize
from edgeloop.optimize._prepare import PRE_PROCESS_MODES, fold_weight_constants

SHAPES = {"mobilenet": (3, 32, 32), "cnn": (1, 8, 8)}


def _data(arch: str, n: int = 48) -> dict[str, np.ndarray]:
    return {"x": np.random.default_rng(0).standard_normal((n, *SHAPES[arch])).astype(np.float32)}


def _report(out: Path) -> dict[str, object]:
    return json.loads((out / "report.json").read_text())  # type: ignore[no-any-return]


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["mobilenet", "cnn"])
@pytest.mark.parametrize("opset", [11, 12])
def test_static_int8_on_constant_weight_models(
    foreign_cnn: Callable[..., Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    arch: str,
    opset: int,
) -> None:
    # prepare: the user's cwd is a folder of its own, to see what is left there
    src = foreign_cnn(arch, opset)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    out = tmp_path / "out"
    # act
    card = optimize(src, "int8", _data(arch), out_dir=out)
    # assert
    steps = _report(out)["steps"]
    pre = next(s for s in steps if s["step"] == "preprocess")  # type: ignore[union-attr]
    assert pre["details"]["constants_folded"] > 0
    assert pre["details"]["opset_upgraded_to"] == 13
    assert pre["details"]["mode"] in {m for m, _ in PRE_PROCESS_MODES[:2]}
    ops = Counter(n.op_type for n in onnx.load(str(out / "model.onnx")).graph.node)
    assert ops["DequantizeLinear"] > 0
    assert ops["BatchNormalization"] == 0  # folded by the graph optimisation
    assert card.size_bytes is not None and card.size_bytes < 0.5 * src.stat().st_size
    assert card.metrics["cosine_min"] > 0.9
    assert list(cwd.iterdir()) == []


@pytest.mark.slow
def test_dynamic_int8_on_a_conv_net_warns_when_the_file_does_not_shrink(
    foreign_cnn: Callable[..., Path], tmp_path: Path
) -> None:
    # prepare: dynamic int8 quantizes only the classifier Gemm of a conv net
    src = foreign_cnn("mobilenet", 11)
    # act
    card = optimize(src, "int8-dynamic", _data("mobilenet"), out_dir=tmp_path / "out")
    # assert: it quantized something, and says plainly when that did not shrink the file
    ops = Counter(n.op_type for n in onnx.load(str(tmp_path / "out" / "model.onnx")).graph.node)
    assert ops["MatMulInteger"] + ops["DynamicQuantizeMatMul"] > 0
    step = _report(tmp_path / "out")["steps"][-1]  # type: ignore[index]
    assert (
        step["details"]["float_weight_bytes"]["after"]
        < step["details"]["float_weight_bytes"]["before"]
    )
    assert any("of the float weight bytes float" in w for w in step["warnings"])
    assert card.size_bytes is not None


@pytest.mark.slow
def test_opset_kept_falls_back_to_per_tensor_with_a_warning(
    foreign_cnn: Callable[..., Path], tmp_path: Path
) -> None:
    # prepare: a recipe that keeps opset 11 (as if the converter had failed)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "name: keep-opset\npasses:\n  - preprocess:\n      upgrade_opset: false\n"
        "  - quantize:\n      per_channel: true\n"
    )
    # act
    optimize(foreign_cnn("cnn", 11), recipe, _data("cnn"), out_dir=tmp_path / "out")
    # assert
    q = next(s for s in _report(tmp_path / "out")["steps"] if s["step"] == "quantize")  # type: ignore[union-attr]
    assert q["details"]["per_channel"] is False
    assert any("per tensor" in w and "opset 11" in w for w in q["warnings"])
    model = onnx.load(str(tmp_path / "out" / "model.onnx"))
    assert not any(
        a.name == "axis"
        for n in model.graph.node
        if n.op_type == "DequantizeLinear"
        for a in n.attribute
    )


def _conv_only() -> onnx.ModelProto:
    w = numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 6, 6])],
        [w],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_dynamic_int8_that_quantizes_nothing_says_so(tmp_path: Path) -> None:
    # prepare
    src = tmp_path / "conv.onnx"
    onnx.save(_conv_only(), str(src))
    # act / assert
    with pytest.raises(PassError, match="dynamic int8 quantized nothing"):
        optimize(src, "int8-dynamic", out_dir=tmp_path / "out")


def test_fold_weight_constants_moves_tensors_to_initializers() -> None:
    # prepare
    model = _conv_only()
    t = model.graph.initializer[0]
    del model.graph.initializer[:]
    model.graph.node.insert(0, helper.make_node("Constant", [], ["w"], value=t))
    # act
    moved = fold_weight_constants(model)
    # assert
    assert moved == 1
    assert [n.op_type for n in model.graph.node] == ["Conv"]
    assert numpy_helper.to_array(model.graph.initializer[0]).shape == (4, 3, 3, 3)
    onnx.checker.check_model(model)
