"""The cost model's calibration set: zoo models at shapes of their own, fp32 and int8, that
``edgeloop profile --calibrate`` times on a target (``edgeloop.analysis.calibrate`` fits the
latency coefficients on them). None of them is among ``benchmarks/costmodel.py``'s held-out
models (the benchmark asserts it)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from edgeloop.analysis import CalibrationModel
from edgeloop.zoo._architectures import build_model

__all__ = ["calibration_models", "quantize_dynamic_int8", "quantize_static_qdq"]


# torch_to_onnx (the zoo's exporter) makes only the batch dimension symbolic; the calibration
# transformers need a symbolic sequence length too, priced at several lengths.
def _export(
    module: Any,
    args: tuple[Any, ...],
    path: Path,
    names: list[str],
    dynamic: dict[str, dict[int, str]],
) -> None:
    import torch

    module.eval()
    with torch.no_grad():
        torch.onnx.export(
            module,
            args,
            str(path),
            input_names=names,
            output_names=["y"],
            opset_version=17,
            dynamic_axes=dynamic,
            do_constant_folding=True,
            dynamo=False,
        )


class _Reader:
    def __init__(self, feeds: list[dict[str, np.ndarray]]) -> None:
        self._it = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)


def quantize_static_qdq(src: Path, dest: Path, feeds: Mapping[str, np.ndarray]) -> None:
    """Static QDQ int8 (per-channel s8 weights, u8 activations) calibrated on random feeds."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    pre = dest.with_suffix(".pre.onnx")
    quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
    rng = np.random.default_rng(1)
    batches = [
        {k: rng.standard_normal(v.shape).astype(v.dtype) for k, v in feeds.items()}
        for _ in range(8)
    ]
    quantize_static(
        str(pre),
        str(dest),
        _Reader(batches),  # type: ignore[arg-type]
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )
    pre.unlink()


def quantize_dynamic_int8(src: Path, dest: Path) -> None:
    """Dynamic int8 (s8 weights; activations quantized per run)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(src), str(dest), weight_type=QuantType.QInt8)


# The calibration set: shapes none of benchmarks/costmodel.py's held-out models has.
_CAL_IMAGE: tuple[tuple[str, str, tuple[int, ...], dict[str, Any]], ...] = (
    ("cal-cnn-w24-28", "cnn", (1, 1, 28, 28), {"in_channels": 1, "width": 24}),
    ("cal-cnn-w48-48", "cnn", (1, 3, 48, 48), {"in_channels": 3, "width": 48}),
    ("cal-cnn-w12-40", "cnn", (1, 3, 40, 40), {"in_channels": 3, "width": 12}),
    ("cal-mobilenet-w0.35-48", "mobilenet", (1, 3, 48, 48), {"width": 0.35, "input_size": 48}),
    ("cal-mobilenet-w1.0-64", "mobilenet", (1, 3, 64, 64), {"width": 1.0, "input_size": 64}),
    ("cal-mobilenet-w0.6-112", "mobilenet", (1, 3, 112, 112), {"width": 0.6, "input_size": 112}),
    (
        "cal-mbconv-w0.75-d1-k5-48",
        "mbconv",
        (1, 3, 48, 48),
        {"width": 0.75, "depth": 1, "kernel": 5, "input_size": 48},
    ),
    (
        "cal-mbconv-w1.0-d1-k3-80",
        "mbconv",
        (1, 3, 80, 80),
        {"width": 1.0, "depth": 1, "kernel": 3, "input_size": 80},
    ),
    ("cal-cnn1d-w32", "cnn1d", (1, 3, 128), {"in_channels": 3, "width": 32}),
    ("cal-cnn1d-w8", "cnn1d", (1, 3, 256), {"in_channels": 3, "width": 8}),
)
_CAL_IMAGE_QUICK = ("cal-cnn-w24-28", "cal-mobilenet-w0.35-48", "cal-mbconv-w0.75-d1-k5-48")
_CAL_DENSE = ((256, 128, 32), (256, 1024, 32))  # (features, hidden, latent)
# (name, dim, layers, vocab, sequence lengths)
_CAL_TRANSFORMER = (
    ("cal-transformer-d96-l3", 96, 3, 4000, (16, 48, 96)),
    ("cal-transformer-d256-l4", 256, 4, 2000, (24, 64)),
)


def calibration_models(work: Path, *, quick: bool = False) -> list[CalibrationModel]:
    """Build the calibration set under ``work``: the zoo's image models and their static QDQ
    int8 versions, autoencoders and transformers (symbolic sequence length, priced at a few)
    and their dynamic int8 versions. ``quick``: a handful of them. Needs torch."""
    import torch

    torch.manual_seed(1)
    rng = np.random.default_rng(1)
    out: list[CalibrationModel] = []
    for name, arch, shape, kw in _CAL_IMAGE:
        if quick and name not in _CAL_IMAGE_QUICK:
            continue
        path = work / f"{name}.onnx"
        _export(build_model(arch, **kw), (torch.randn(*shape),), path, ["x"], {"x": {0: "b"}})
        feeds = {"x": rng.standard_normal(shape).astype(np.float32)}
        out.append(CalibrationModel(name, path, feeds, "fp32", arch))
        q = work / f"{name}-int8.onnx"
        quantize_static_qdq(path, q, feeds)
        out.append(CalibrationModel(f"{name}-int8", q, feeds, "int8", arch))
    for features, hidden, latent in _CAL_DENSE[:1] if quick else _CAL_DENSE:
        name = f"cal-autoencoder-{features}-h{hidden}"
        path = work / f"{name}.onnx"
        net = build_model("autoencoder", in_features=features, hidden=hidden, latent=latent)
        _export(net, (torch.randn(1, features),), path, ["x"], {"x": {0: "b"}})
        feeds = {"x": rng.standard_normal((1, features)).astype(np.float32)}
        out.append(CalibrationModel(name, path, feeds, "fp32", "autoencoder"))
        q = work / f"{name}-int8.onnx"
        quantize_dynamic_int8(path, q)
        out.append(CalibrationModel(f"{name}-int8", q, feeds, "int8", "autoencoder"))
    for name, dim, layers, vocab, seqs in _CAL_TRANSFORMER[:1] if quick else _CAL_TRANSFORMER:
        path = work / f"{name}.onnx"
        net = build_model(
            "transformer",
            vocab_size=vocab,
            max_len=128,
            dim=dim,
            layers=layers,
            heads=4,
            ff=2 * dim,
        )
        ids = torch.randint(0, vocab, (1, 32))
        mask = torch.ones(1, 32, dtype=torch.int64)
        dyn = {"input_ids": {0: "b", 1: "seq"}, "attention_mask": {0: "b", 1: "seq"}}
        _export(net, (ids, mask), path, ["input_ids", "attention_mask"], dyn)
        q = work / f"{name}-int8.onnx"
        quantize_dynamic_int8(path, q)
        for seq in seqs[:1] if quick else seqs:
            feeds = {
                "input_ids": rng.integers(0, vocab, (1, seq)).astype(np.int64),
                "attention_mask": np.ones((1, seq), np.int64),
            }
            shapes: dict[str, tuple[int, ...]] = {
                "input_ids": (1, seq),
                "attention_mask": (1, seq),
            }
            for p, suffix, precision in ((path, "", "fp32"), (q, "-int8", "int8")):
                out.append(
                    CalibrationModel(
                        f"{name}-s{seq}{suffix}", p, feeds, precision, "transformer", shapes
                    )
                )
    return out
