"""Every preset on every zoo architecture and on ONNX models built without the zoo."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from edgeloop.artifacts import ModelCard
from edgeloop.optimize import optimize
from edgeloop.optimize._model import model_sha256

PRESETS = ("int8", "int8-dynamic", "int4", "fp16", "fused")
ARCHS = ("cnn", "mobilenet", "cnn1d", "transformer", "autoencoder")


def _ops(path: Path) -> Counter[str]:
    return Counter(n.op_type for n in onnx.load(str(path)).graph.node)


def _check_preset(preset: str, src: Path, out: Path, card: ModelCard) -> None:
    """What each preset must have done to the graph, and what every run must have written."""
    model = out / "model.onnx"
    ops = _ops(model)
    report = json.loads((out / "report.json").read_text())
    warnings = [w for s in report["steps"] for w in s["warnings"]]
    if preset == "int8":
        assert ops["DequantizeLinear"] > 0 and ops["QuantizeLinear"] > 0
        assert card.size_bytes is not None and card.size_bytes < src.stat().st_size
    elif preset == "int8-dynamic":
        assert (
            ops["DynamicQuantizeLinear"] + ops["MatMulInteger"] + ops["DynamicQuantizeMatMul"] > 0
        )
    elif preset == "int4":
        had_matmul = _ops(src)["MatMul"] > 0
        assert ops["MatMulNBits"] > 0 if had_matmul else any("int4" in w for w in warnings)
    elif preset == "fp16":
        inits = onnx.load(str(model)).graph.initializer
        assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in inits)
        assert onnx.load(str(model)).graph.output[0].type.tensor_type.elem_type == 1  # float32
    elif preset == "fused":
        details = report["steps"][1]["details"]
        assert details["nodes_after"] <= details["nodes_before"]
        assert (out / "model.ort").stat().st_size > 0
    assert card.lineage[0].role == "source_model" and card.lineage[0].sha256 == model_sha256(src)
    assert card.sha256 == model_sha256(model)
    assert card.recipe is not None and card.recipe.name == preset
    for name in ("report.json", "report.html", "report.png", "model_card.json"):
        assert (out / name).stat().st_size > 0
    page = (out / "report.html").read_text()
    assert 'src="data:image/png;base64,' in page and not re.search(r'(src|href)="https?:', page)
    # int4 on the untrained zoo transformer: pre-processing now keeps ORT's graph optimisation
    # (with ONNX shape inference) where symbolic shape inference fails, and int4 reaches more
    # weights of the optimised graph; 0.898 was seen at 32 evaluation samples
    assert card.metrics["cosine_min"] > (0.85 if preset == "int4" else 0.95)


@pytest.mark.slow
@pytest.mark.parametrize("arch", ARCHS)
def test_every_preset_on_every_zoo_model(
    arch: str, quant_zoo_model: Callable[[str], tuple[Path, str]], tmp_path: Path
) -> None:
    src, dataset = quant_zoo_model(arch)
    for preset in PRESETS:
        out = tmp_path / preset
        card = optimize(src, preset, dataset, out_dir=out, eval_samples=32, calib_samples=32)
        _check_preset(preset, src, out, card)


@pytest.mark.parametrize("preset", PRESETS)
def test_presets_on_a_conv_net_built_with_onnx_helper(
    preset: str, quant_conv: Path, quant_conv_npz: Path, tmp_path: Path
) -> None:
    card = optimize(quant_conv, preset, quant_conv_npz, out_dir=tmp_path / "o", eval_samples=32)
    _check_preset(preset, quant_conv, tmp_path / "o", card)
    assert card.metrics["accuracy_original"] == 1.0  # labels are the float model's predictions


@pytest.mark.parametrize("preset", ["int8", "int8-dynamic", "int4"])
def test_presets_on_a_two_input_int64_token_model(
    preset: str, quant_tokens: Path, quant_tokens_npz: Path, tmp_path: Path
) -> None:
    card = optimize(quant_tokens, preset, quant_tokens_npz, out_dir=tmp_path / "o")
    _check_preset(preset, quant_tokens, tmp_path / "o", card)
    assert [i.name for i in card.inputs] == ["input_ids", "attention_mask"]
    assert [i.dtype for i in card.inputs] == ["int64", "int64"]
    roles = {ref.role for ref in card.lineage}
    assert ("calibration_data" in roles) == (preset == "int8")


def test_quantized_model_runs_in_onnx_runtime_with_int64_feeds(
    quant_tokens: Path, quant_tokens_npz: Path, tmp_path: Path
) -> None:
    optimize(quant_tokens, "int8", quant_tokens_npz, out_dir=tmp_path / "o")
    feeds = dict(np.load(quant_tokens_npz))
    ref = ort.InferenceSession(str(quant_tokens)).run(None, feeds)[0]
    got = ort.InferenceSession(str(tmp_path / "o" / "model.onnx")).run(None, feeds)[0]
    cos = (ref * got).sum(1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(got, axis=1))
    assert cos.min() > 0.98


def test_static_int8_without_data_says_it_needs_calibration_data(
    quant_conv: Path, tmp_path: Path
) -> None:
    from edgeloop.errors import DataError

    with pytest.raises(DataError, match="calibration data"):
        optimize(quant_conv, "int8", None, out_dir=tmp_path / "o")


@pytest.mark.slow
def test_zoo_checkpoint_goes_through_export_then_int8(tmp_path: Path) -> None:
    from edgeloop.data import load_dataset
    from edgeloop.zoo import build_model, kwargs_for, save_checkpoint

    ds = load_dataset("digits", split="train", seed=0)
    kwargs = kwargs_for("cnn", ds)
    spec = [
        {"name": n, "shape": list(ds.shapes()[n]), "dtype": ds.dtypes()[n]} for n in ds.input_names
    ]
    ckpt = save_checkpoint(
        build_model("cnn", **kwargs),
        tmp_path / "cnn.pt",
        arch="cnn",
        arch_kwargs=kwargs,
        input_spec=spec,
        task="classification",
        classes=ds.classes,
    )
    card = optimize(ckpt, "int8", "digits", out_dir=tmp_path / "o", eval_samples=32)
    assert _ops(tmp_path / "o" / "model.onnx")["QuantizeLinear"] > 0
    assert card.inputs[0].name == "input" and card.dataset == "digits"
    assert len(card.labels) == 10
