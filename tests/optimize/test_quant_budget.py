"""Accuracy budgets: met by keeping sensitive nodes in float, or a loud BudgetError."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from edgeloop.errors import BudgetError, InputError
from edgeloop.optimize import optimize


def _float_gemm(path: Path) -> bool:
    """The Gemm reads its weight straight from a float32 initializer (no DequantizeLinear)."""
    graph = onnx.load(str(path)).graph
    inits = {t.name: t for t in graph.initializer}
    gemm = next(n for n in graph.node if n.op_type == "Gemm")
    return gemm.input[1] in inits and inits[gemm.input[1]].data_type == onnx.TensorProto.FLOAT


def test_plain_int8_misses_a_tight_sqnr_floor_that_mixed_precision_meets(
    quant_conv: Path, quant_conv_npz: Path, tmp_path: Path
) -> None:
    plain = optimize(quant_conv, "int8", quant_conv_npz, out_dir=tmp_path / "plain")
    floor = plain.metrics["sqnr_min_db"] + 1.0  # out of reach for the all-int8 model
    card = optimize(quant_conv, "int8", quant_conv_npz, out_dir=tmp_path / "mixed", min_sqnr=floor)
    assert card.metrics["sqnr_min_db"] >= floor
    report = json.loads((tmp_path / "mixed" / "report.json").read_text())
    mixed = report["steps"][-1]["details"]["mixed_precision"]
    assert mixed["budget_met"] is True
    kept = [k["node"] for k in mixed["kept_float"]]
    assert kept and all(k["sqnr_gain_db"] > 0 for k in mixed["kept_float"])
    assert report["budget"]["met"] is True
    if "Gemm_6" in kept:  # the node named as kept really is float in the written model
        assert _float_gemm(tmp_path / "mixed" / "model.onnx")


def test_unreachable_budget_writes_the_best_model_and_raises(
    quant_conv: Path, quant_conv_npz: Path, tmp_path: Path
) -> None:
    out = tmp_path / "o"
    with pytest.raises(BudgetError, match=r"min SQNR .* < 200.0 dB \(missed by [0-9.]+ dB\)"):
        optimize(quant_conv, "int8", quant_conv_npz, out_dir=out, min_sqnr=200.0)
    assert (out / "model.onnx").exists()
    report = json.loads((out / "report.json").read_text())
    assert report["budget"]["met"] is False and report["budget"]["shortfall"]["min_sqnr"] > 100
    assert "MISSED" in (out / "report.html").read_text()


def test_max_drop_on_accuracy_holds(quant_conv: Path, quant_conv_npz: Path, tmp_path: Path) -> None:
    card = optimize(quant_conv, "int8", quant_conv_npz, out_dir=tmp_path / "o", max_drop=0.05)
    assert card.metrics["accuracy_original"] - card.metrics["accuracy"] <= 0.05


def test_max_drop_without_labels_asks_for_a_similarity_floor(
    quant_conv: Path, tmp_path: Path
) -> None:
    data = tmp_path / "unlabelled.npz"
    np.savez(data, x=np.random.default_rng(0).standard_normal((16, 3, 8, 8)).astype(np.float32))
    with pytest.raises(InputError, match="min_cosine or min_sqnr"):
        optimize(quant_conv, "int8", data, out_dir=tmp_path / "o", max_drop=0.01)


def test_cosine_floor_on_dynamic_int8_of_the_token_model(
    quant_tokens: Path, quant_tokens_npz: Path, tmp_path: Path
) -> None:
    card = optimize(
        quant_tokens, "int8-dynamic", quant_tokens_npz, out_dir=tmp_path / "o", min_cosine=0.999
    )
    assert card.metrics["cosine_min"] >= 0.999
