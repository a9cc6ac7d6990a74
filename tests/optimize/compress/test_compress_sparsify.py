"""Unstructured magnitude pruning: per-layer sparsity and a smaller compressed download."""

from __future__ import annotations

from typing import Any

import pytest

from edgeloop.errors import InputError
from edgeloop.optimize import sparsify


def test_sparsify_hits_target_per_layer_and_compresses_better(compress_user_model: Any) -> None:
    res = sparsify(compress_user_model, sparsity=0.8, input_shape=(1, 8, 8))
    d = res.details
    for name, stats in d["layers"].items():
        assert stats["sparsity"] == pytest.approx(0.8, abs=0.01), name
    assert d["onnx_bytes_after"]["raw"] == pytest.approx(d["onnx_bytes_before"]["raw"], rel=0.01)
    assert d["onnx_bytes_after"]["zlib"] < 0.6 * d["onnx_bytes_before"]["zlib"]
    assert "not the latency" in d["note"]
    assert not hasattr(res.model.conv1, "weight_mask")  # the mask is made permanent


def test_sparsify_global_and_finetune_keeps_zeros(
    compress_user_trained: Any, compress_digits: Any
) -> None:
    import copy

    train, val = compress_digits
    res = sparsify(
        copy.deepcopy(compress_user_trained),
        sparsity=0.5,
        global_pruning=True,
        data=train,
        val=val,
        finetune_epochs=1,
    )
    assert res.details["sparsity"] == pytest.approx(0.5, abs=0.01)
    assert res.details["accuracy_after"] > 0.3


def test_sparsify_refuses_bad_sparsity(compress_user_model: Any) -> None:
    with pytest.raises(InputError, match="sparsity"):
        sparsify(compress_user_model, sparsity=1.0, input_shape=(1, 8, 8))


def test_sparsify_reports_accuracy_before_and_warns_beyond_the_budget(
    compress_user_trained: Any, compress_digits: Any
) -> None:
    import copy

    _, val = compress_digits

    res = sparsify(
        copy.deepcopy(compress_user_trained),
        sparsity=0.97,
        val=val,
        input_shape=(1, 8, 8),
        max_drop=0.01,
    )

    d = res.details
    assert d["accuracy_before"] > 0.8
    assert d["accuracy_drop"] == pytest.approx(d["accuracy_before"] - d["accuracy_after"])
    assert d["accuracy_drop"] > 0.01
    assert d["within_budget"] is False
    assert res.warnings[0].startswith("val accuracy fell")
    assert f"{100 * d['accuracy_before']:.2f}%" in res.warnings[0]


def test_sparsify_within_the_budget_does_not_warn(
    compress_user_trained: Any, compress_digits: Any
) -> None:
    import copy

    _, val = compress_digits

    res = sparsify(
        copy.deepcopy(compress_user_trained),
        sparsity=0.97,
        val=val,
        input_shape=(1, 8, 8),
        max_drop=1.0,
    )

    assert res.details["within_budget"] is True
    assert not any(w.startswith("val accuracy fell") for w in res.warnings)
