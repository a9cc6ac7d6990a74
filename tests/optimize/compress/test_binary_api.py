"""Binary weights: 1 bit + per-channel scale, packed on disk, unpacked into a float model."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch

from edgeloop.errors import InputError, ModelFormatError
from edgeloop.optimize import binarize, load_binary, save_binary
from edgeloop.optimize._binary import fp32_bytes


def test_binarize_zoo_model_packs_and_loads_back(
    compress_ckpt: Path, compress_zoo_model: Any, compress_digits: Any, tmp_path: Path
) -> None:
    from edgeloop.optimize import load_model

    train, val = compress_digits
    _, meta = load_model(compress_ckpt)
    res = binarize(compress_zoo_model, train, val, epochs=1)
    d = res.details
    assert d["binarized"] == ["features.1.0", "features.3.0"]  # first and last stay float
    assert d["kept_float"] == ["features.0.0", "classifier.1"] or set(d["kept_float"]) == {
        "features.0.0",
        "classifier.1",
    }
    w = res.model.features[1][0].weight.detach().flatten(1)
    assert torch.allclose(w.abs(), w.abs().amax(1, keepdim=True))  # +-alpha per channel
    size = save_binary(
        res.model,
        tmp_path / "b.npz",
        d["binarized"],
        arch=meta["arch"],
        arch_kwargs=meta["arch_kwargs"],
    )
    assert size == (tmp_path / "b.npz").stat().st_size
    # a width-8 CNN has only ~2000 weights, so the file's fixed overhead weighs heavily here;
    # the benchmark measures the ratio on MobileNet
    assert fp32_bytes(res.model) / size > 3
    loaded = load_binary(tmp_path / "b.npz")  # rebuilt from the zoo by name
    x = torch.from_numpy(val.x[:16])
    assert torch.allclose(loaded(x), res.model(x), atol=2e-2)  # float16 for non-binary tensors


def test_binary_user_module_needs_its_class(
    compress_user_trained: Any, compress_user_class: type, compress_digits: Any, tmp_path: Path
) -> None:
    res = binarize(copy.deepcopy(compress_user_trained), compress_digits[0], epochs=1)
    assert res.details["binarized"] == ["conv2", "fc"]
    save_binary(res.model, tmp_path / "u.npz", res.details["binarized"], float_dtype="float32")
    with pytest.raises(InputError, match="custom model"):
        load_binary(tmp_path / "u.npz")
    loaded = load_binary(tmp_path / "u.npz", compress_user_class())
    x = torch.from_numpy(compress_digits[1].x[:8])
    assert torch.allclose(loaded(x), res.model(x), atol=1e-5)


def test_binary_rejects_files_that_are_not_its_format(tmp_path: Path) -> None:
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ModelFormatError, match="not an edgeloop binary-weights file"):
        load_binary(bad)


def test_save_binary_refuses_float_weights(compress_user_model: Any, tmp_path: Path) -> None:
    from edgeloop.errors import PassError

    with pytest.raises(PassError, match="'conv2' does not hold binary weights"):
        save_binary(compress_user_model, tmp_path / "x.npz", ["conv2"])
