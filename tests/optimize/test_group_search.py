"""The static int8 budget search weighs normalization, element-wise and attention paths (as
op-type groups), not only the Conv/MatMul/Gemm weights."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from pathlib import Path

import onnx
import pytest

from edgeloop.errors import BudgetError
from edgeloop.optimize import optimize
from edgeloop.optimize._quantize import node_groups


def test_groups_of_a_transformer(quant_zoo_model: Callable[[str], tuple[Path, str]]) -> None:
    # prepare
    src, _ = quant_zoo_model("transformer")
    model = onnx.load(str(src))
    from edgeloop.optimize._model import name_nodes

    name_nodes(model)
    # act
    groups = node_groups(model, set())
    # assert: attention products and the softmax are candidates, weighted MatMuls are not grouped
    assert groups["attention:MatMul"]
    assert "op:Softmax" in groups
    inits = {t.name for t in model.graph.initializer}
    by_name = {n.name: n for n in model.graph.node}
    assert all(by_name[n].input[1] not in inits for n in groups["attention:MatMul"])
    assert not any(k.startswith("op:MatMul") or k.startswith("op:Conv") for k in groups)


@pytest.mark.slow
def test_transformer_keeps_layernorm_softmax_and_residuals_float_by_default(
    quant_zoo_model: Callable[[str], tuple[Path, str]], tmp_path: Path
) -> None:
    # prepare
    src, data = quant_zoo_model("transformer")
    # act
    optimize(src, "int8", data, out_dir=tmp_path / "o", eval_samples=64)
    # assert: only the MAC ops read dequantized tensors; the report names what stayed float
    step = json.loads((tmp_path / "o" / "report.json").read_text())["steps"][-1]
    assert step["details"]["op_types"] == ["Conv", "ConvTranspose", "MatMul", "Gemm"]
    assert "LayerNormalization" in step["details"]["kept_float_ops"]
    model = onnx.load(str(tmp_path / "o" / "model.onnx"))
    dq_out = {n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    fed = {n.op_type for n in model.graph.node if set(n.input) & dq_out}
    assert "MatMul" in fed
    assert not fed & {"LayerNormalization", "Softmax", "Add", "Mul", "Div"}


@pytest.mark.slow
def test_budget_search_probes_groups_first(
    quant_zoo_model: Callable[[str], tuple[Path, str]], tmp_path: Path
) -> None:
    # prepare: every op type quantized (float_ops: none), and a floor that model misses
    src, data = quant_zoo_model("transformer")
    recipe = tmp_path / "all.yaml"
    recipe.write_text("name: all-ops\npasses:\n  - preprocess\n  - quantize: {float_ops: none}\n")
    plain = optimize(src, recipe, data, out_dir=tmp_path / "plain", eval_samples=64)
    floor = min(0.99999, plain.metrics["cosine_min"] + (1 - plain.metrics["cosine_min"]) / 2)
    # act
    with contextlib.suppress(BudgetError):  # met or missed, the report shows the search
        optimize(src, recipe, data, out_dir=tmp_path / "o", min_cosine=floor, eval_samples=64)
    # assert
    step = json.loads((tmp_path / "o" / "report.json").read_text())["steps"][-1]
    probed = {s["node"] for s in step["details"]["group_search"]["sensitivity"]}
    assert "attention:MatMul" in probed and any(p.startswith("op:") for p in probed)
    kept = step["details"]["mixed_precision"]["kept_float_nodes"]
    names = {n.name for n in onnx.load(str(tmp_path / "o" / "model.onnx")).graph.node}
    assert set(kept) <= names  # the report names real nodes of the written model
