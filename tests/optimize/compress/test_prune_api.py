"""Structured pruning (torch-pruning): channels really go, MACs drop, bad input is refused."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch

from edgeloop.errors import InputError, PassError, UnknownNameError
from edgeloop.optimize import load_model, prune, save_model


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_prune_zoo_model_removes_channels_and_macs(
    compress_zoo_model: Any, compress_digits: Any
) -> None:
    train, val = compress_digits
    res = prune(compress_zoo_model, ratio=0.5, data=train, val=val)
    d = res.details
    assert d["macs_after"] < 0.35 * d["macs_before"]  # half the channels: about a quarter of MACs
    assert d["params_after"] < 0.4 * d["params_before"]
    assert d["layers"]["features.0.0"] == [8, 4]
    assert d["layers"]["classifier.1"] == [10, 10]  # the head keeps every class
    assert "classifier.1" in d["protected"]
    out = res.model(torch.from_numpy(val.x[:3]))
    assert out.shape == (3, 10)


def test_prune_user_module_with_protected_layer(
    compress_user_model: Any, compress_digits: Any
) -> None:
    train, _ = compress_digits
    res = prune(compress_user_model, ratio=0.5, data=train, protect=["conv2"])
    m = res.model
    assert m.conv1.out_channels == 8
    assert m.conv2.out_channels == 24  # protected: whole
    assert m.fc.out_features == 16
    assert m.out.out_features == 10
    assert m(torch.zeros(2, 1, 8, 8)).shape == (2, 10)


def test_prune_iterative_with_finetuning_recovers(
    compress_user_trained: Any, compress_digits: Any
) -> None:
    train, val = compress_digits
    res = prune(
        copy.deepcopy(compress_user_trained),
        ratio=0.5,
        data=train,
        val=val,
        steps=2,
        finetune_epochs=2,
        importance="taylor",
    )
    hist = res.details["history"]
    assert [h["step"] for h in hist] == [1, 2]
    assert hist[-1]["accuracy_finetuned"] >= hist[-1]["accuracy_pruned"]
    assert res.details["accuracy_after"] == hist[-1]["accuracy_finetuned"]
    assert res.details["finetune_seconds"] > 0


@pytest.mark.parametrize("importance", ["l1", "l2", "magnitude"])
def test_prune_importances_and_global(compress_user_model: Any, importance: str) -> None:
    res = prune(
        compress_user_model,
        ratio=0.3,
        input_shape=(1, 8, 8),
        importance=importance,
        global_pruning=importance == "l1",
    )
    assert res.details["macs_after"] < res.details["macs_before"]


@pytest.mark.parametrize("ratio", [0.0, 1.0, 1.5, -0.2, "half"])
def test_prune_ratio_outside_open_interval_refused_before_anything(
    compress_user_model: Any, compress_digits: Any, ratio: Any
) -> None:
    before = copy.deepcopy(compress_user_model)
    with pytest.raises(InputError, match="ratio"):
        prune(compress_user_model, ratio=ratio, data=compress_digits[0], finetune_epochs=5)
    assert _same_weights(before, compress_user_model)


def test_prune_untraceable_model_names_the_layer(compress_hardcoded_model: Any) -> None:
    with pytest.raises(PassError, match="after layer 'c2'"):
        prune(compress_hardcoded_model, ratio=0.5, input_shape=(1, 8, 8))


def test_prune_unknown_protected_layer(compress_user_model: Any) -> None:
    with pytest.raises(UnknownNameError, match="'nope'.*conv1"):
        prune(compress_user_model, ratio=0.5, input_shape=(1, 8, 8), protect=["nope"])


def test_prune_unknown_importance(compress_user_model: Any) -> None:
    with pytest.raises(InputError, match="importance 'fisher'"):
        prune(compress_user_model, ratio=0.5, input_shape=(1, 8, 8), importance="fisher")


def test_prune_transformer_narrows_feed_forward_keeps_attention() -> None:
    from edgeloop.data import load_dataset
    from edgeloop.zoo import build_model

    data = load_dataset("tokens", "train").subset(32)
    torch.manual_seed(0)
    model = build_model(
        "transformer", vocab_size=1000, num_classes=8, max_len=48, dim=32, heads=4, layers=1, ff=64
    )
    res = prune(model, ratio=0.5, data=data)
    layer = res.model.layers[0]
    assert layer.ff[0].out_features == 32
    assert layer.qkv.out_features == 96  # fused qkv attention stays whole
    assert res.details["macs_after"] < res.details["macs_before"]


def test_pruned_checkpoint_round_trip(
    compress_ckpt: Path, compress_digits: Any, tmp_path: Path
) -> None:
    model, meta = load_model(compress_ckpt)
    res = prune(model, ratio=0.5, data=compress_digits[0], steps=2)
    out = save_model(
        res.model, tmp_path / "p.pt", meta, pruning_history=res.artifacts["pruning_history"]
    )
    again, meta2 = load_model(out)
    x = torch.from_numpy(compress_digits[1].x[:4])
    assert torch.allclose(again(x), res.model.eval()(x), atol=1e-5)
    assert meta2["extra"]["pruning_history"]
