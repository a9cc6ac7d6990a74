"""Models whose weights live in external data files (how models over 2 GB are stored)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from edgeloop.optimize import optimize
from edgeloop.optimize._model import external_files, model_sha256, model_size


@pytest.fixture
def external_conv(quant_conv: Path, tmp_path: Path) -> Path:
    model = onnx.load(str(quant_conv))
    dest = tmp_path / "ext" / "conv.onnx"
    dest.parent.mkdir()
    onnx.save_model(
        model, str(dest), save_as_external_data=True, location="weights.bin", size_threshold=0
    )
    return dest


def test_fixture_really_keeps_weights_outside_the_protobuf(external_conv: Path) -> None:
    assert external_files(external_conv) == [external_conv.parent / "weights.bin"]
    assert model_size(external_conv) > external_conv.stat().st_size


def test_hash_covers_the_external_weights(external_conv: Path) -> None:
    before = model_sha256(external_conv)
    data = external_conv.parent / "weights.bin"
    raw = bytearray(data.read_bytes())
    raw[-1] ^= 0xFF
    data.write_bytes(bytes(raw))
    assert model_sha256(external_conv) != before


@pytest.mark.parametrize("preset", ["int8", "fp16", "fused"])
def test_presets_read_and_write_external_data(
    preset: str, external_conv: Path, quant_conv_npz: Path, tmp_path: Path
) -> None:
    out = tmp_path / "o"
    card = optimize(external_conv, preset, quant_conv_npz, out_dir=out, eval_samples=16)
    model = out / "model.onnx"
    assert external_files(model), "the result keeps its weights in external data too"
    assert card.size_bytes == model_size(model)
    x = np.load(quant_conv_npz)["x"][:4]
    ref = ort.InferenceSession(str(external_conv)).run(None, {"x": x})[0]
    got = ort.InferenceSession(str(model)).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, ref, atol=0.2 * np.abs(ref).max())
