"""Torch passes compose with the ONNX quantization passes in one recipe."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import onnx
import pytest

from edgeloop.optimize import list_recipes, optimize

PRUNE_INT8 = {
    "name": "prune-int8-small",
    "passes": [
        {"prune": {"ratio": 0.5, "finetune_epochs": 2}},
        "preprocess",
        {"quantize": {"calibration": "minmax", "per_channel": True}},
    ],
}


def test_preset_prune50_int8_prunes_then_quantizes() -> None:
    recipe = list_recipes()["prune50-int8"]
    names = [p.name for p in recipe.passes]
    assert names == ["prune", "preprocess", "quantize"]
    assert recipe.passes[0].params["ratio"] == 0.5
    assert recipe.passes[0].params["finetune_epochs"] > 0


@pytest.mark.slow
def test_prune_then_int8_on_a_zoo_checkpoint(compress_ckpt: Path, tmp_path: Path) -> None:
    card = optimize(compress_ckpt, PRUNE_INT8, "digits", out_dir=tmp_path / "out", eval_samples=200)
    steps = {
        s["step"]: s for s in json.loads((tmp_path / "out" / "report.json").read_text())["steps"]
    }
    assert steps["prune"]["macs"] < 0.4 * steps["original"]["macs"]
    assert steps["prune"]["details"]["layers"]["features.0.0"] == [8, 4]
    assert steps["quantize"]["metric"] > 0.3  # width 8 -> 4 on digits, two epochs: chance is 0.1
    ops = {n.op_type for n in onnx.load(tmp_path / "out" / "model.onnx").graph.node}
    assert "QuantizeLinear" in ops
    assert card.recipe is not None and card.recipe.name == "prune-int8-small"


@pytest.mark.slow
def test_qat_preset_and_a_user_module(compress_user_trained: Any, tmp_path: Path) -> None:
    import copy

    from edgeloop.data import load_dataset

    test = load_dataset("digits", "test")
    card = optimize(
        copy.deepcopy(compress_user_trained),
        {"passes": [{"qat": {"epochs": 1}}]},
        test,
        out_dir=tmp_path / "q",
        eval_samples=200,
    )
    ops = {n.op_type for n in onnx.load(tmp_path / "q" / "model.onnx").graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert card.metrics


def test_prune_pass_refuses_a_bad_ratio_before_training(
    compress_ckpt: Path, tmp_path: Path
) -> None:
    from edgeloop.errors import InputError

    bad = {"passes": [{"prune": {"ratio": 1.2, "finetune_epochs": 50}}]}
    with pytest.raises(InputError, match=r"ratio must be in \(0, 1\)"):
        optimize(compress_ckpt, bad, "digits", out_dir=tmp_path / "bad", eval_samples=50)
