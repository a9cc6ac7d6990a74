"""Quantization-aware training, exported as the QDQ ONNX form ONNX Runtime runs.

For when post-training int8 loses too much: the network trains with int8 rounding simulated
in the forward pass (straight-through gradients), so the weights learn to live with it.

* Batch norms are folded into the convolutions before training (``torch.fx``), as a deployed
  int8 network has no separate batch norm.
* Every Conv and Linear gets a fake-quantized input (int8, per tensor, range from an EMA
  observer) and fake-quantized weights (int8, symmetric, per output channel).
* Export goes through the TorchScript ONNX exporter, which writes each fake-quant op as a
  QuantizeLinear/DequantizeLinear pair; ONNX Runtime fuses those into integer kernels. This is
  the same QDQ form that post-training static quantization produces.

``torch.ao.quantization`` is deprecated in favour of torchao's PT2E flow, whose export needs
torchao; plain ``torch.fake_quantize_*`` ops keep this pass on torch alone.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from edgeloop._io import atomic_write_bytes
from edgeloop.errors import InputError, PassError
from edgeloop.optimize._passes import ModelState, PassContext, StepResult, register_pass
from edgeloop.optimize._torch_common import (
    DEFAULT_MAX_DROP,
    Batch,
    CompressResult,
    Progress,
    accuracy,
    call,
    call_progress,
    example_inputs,
    export_onnx_bytes,
    finetune,
    labelled,
    param,
    record_accuracy,
    train_val,
)
from edgeloop.optimize._torch_common import (
    with_limit as _with_limit,
)
from edgeloop.zoo import Augment, augmentation, augmentation_name

__all__ = ["QuantConv", "QuantLinear", "export_qdq", "prepare_qat", "qat"]

QMIN, QMAX = -128, 127


class ActFakeQuant(nn.Module):
    """Per-tensor affine int8 fake quantization; the range is an EMA of batch min/max."""

    def __init__(self, momentum: float = 0.05) -> None:
        super().__init__()
        self.momentum = momentum
        self.lo: torch.Tensor
        self.hi: torch.Tensor
        self.seen: torch.Tensor
        self.register_buffer("lo", torch.tensor(0.0))
        self.register_buffer("hi", torch.tensor(0.0))
        self.register_buffer("seen", torch.tensor(False))

    def qparams(self) -> tuple[float, int]:
        lo, hi = min(float(self.lo), 0.0), max(float(self.hi), 0.0)
        scale = max((hi - lo) / (QMAX - QMIN), 1e-8)
        zero = int(round(QMIN - lo / scale))
        return scale, max(QMIN, min(QMAX, zero))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            with torch.no_grad():
                lo, hi = x.min(), x.max()
                if not bool(self.seen):
                    self.lo.copy_(lo)
                    self.hi.copy_(hi)
                    self.seen.fill_(True)
                else:
                    self.lo.lerp_(lo, self.momentum)
                    self.hi.lerp_(hi, self.momentum)
        if not bool(self.seen):
            return x
        scale, zero = self.qparams()
        return torch.fake_quantize_per_tensor_affine(x, scale, zero, QMIN, QMAX)


def weight_scale(w: torch.Tensor) -> torch.Tensor:
    """Symmetric int8 scale per output channel: max |w| / 127."""
    return w.detach().abs().flatten(1).amax(dim=1).clamp(min=1e-8) / 127.0


def fake_quant_weight(w: torch.Tensor, scale: torch.Tensor | None = None) -> torch.Tensor:
    """Symmetric int8 per output channel (zero point 0), straight-through gradient."""
    scale = weight_scale(w) if scale is None else scale
    zero = torch.zeros(w.shape[0], dtype=torch.int32)
    out: torch.Tensor = torch.fake_quantize_per_channel_affine(w, scale, zero, 0, QMIN, QMAX)
    return out


class _QuantBase(nn.Module):
    """Shared by the wrappers: an input observer and, once frozen for export, a fixed scale."""

    frozen_scale: torch.Tensor | None

    def __init__(self) -> None:
        super().__init__()
        self.act = ActFakeQuant()
        self.frozen_scale = None

    def weight(self) -> torch.Tensor:
        raise NotImplementedError

    def freeze(self) -> None:
        """Fix the weight scale so an export writes it as a constant, not as graph ops."""
        self.frozen_scale = weight_scale(self.weight())

    def qweight(self) -> torch.Tensor:
        return fake_quant_weight(self.weight(), self.frozen_scale)


class QuantConv(_QuantBase):
    """A Conv1d/Conv2d whose input and weights are fake-quantized to int8."""

    def __init__(self, conv: nn.Conv1d | nn.Conv2d) -> None:
        super().__init__()
        self.conv = conv

    def weight(self) -> torch.Tensor:
        return self.conv.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.conv._conv_forward(self.act(x), self.qweight(), self.conv.bias)
        return out


class QuantLinear(_QuantBase):
    """A Linear whose input and weights are fake-quantized to int8."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.linear = linear

    def weight(self) -> torch.Tensor:
        return self.linear.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(self.act(x), self.qweight(), self.linear.bias)


def _fold_bn(model: nn.Module) -> tuple[nn.Module, bool]:
    """Fold Conv+BatchNorm pairs (eval statistics) with torch.fx; unchanged if untraceable."""
    if not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        return model, False
    from torch.fx.experimental.optimization import fuse

    try:
        return fuse(copy.deepcopy(model).eval()), True
    except Exception:  # dynamic control flow: torch.fx cannot trace it; train with the BNs
        return model, False


def prepare_qat(model: nn.Module) -> nn.Module:
    """Replace every Conv1d/Conv2d/Linear of ``model`` (in place) by its fake-quant wrapper."""
    for name, child in list(model.named_children()):
        if isinstance(child, nn.Conv1d | nn.Conv2d):
            setattr(model, name, QuantConv(child))
        elif isinstance(child, nn.Linear):
            setattr(model, name, QuantLinear(child))
        elif not isinstance(child, QuantConv | QuantLinear):
            prepare_qat(child)
    return model


def _calibrate(model: nn.Module, data: Any, batch_size: int, batches: int) -> None:
    from edgeloop.zoo import to_tensors

    ds = labelled(data, "qat data")
    model.train()
    with torch.no_grad():
        for i, (xb, _) in enumerate(ds.batches(batch_size)):
            if i >= batches:
                break
            call(model, to_tensors(xb))
    model.eval()


def qat(
    model: nn.Module,
    train: Any,
    val: Any = None,
    *,
    epochs: int = 3,
    lr: float = 1e-4,
    batch_size: int = 64,
    calibration_batches: int = 8,
    progress: Progress | None = None,
    seed: int = 0,
    augment: Augment | str | None = None,
    max_drop: float | None = DEFAULT_MAX_DROP,
) -> CompressResult:
    """Fold batch norms, insert fake quantization and fine-tune; returns a new module.

    Export the result with :func:`export_qdq`. ``epochs`` of 0 gives plain fake-quant
    calibration (what post-training quantization would do), a baseline to compare against.
    With ``val``, the float model's accuracy (``accuracy_before``) is compared with the int8
    result's (``accuracy_after``); a drop beyond ``max_drop`` (0.01 = 1 point; None: no
    budget) is a warning in the result and ``details["within_budget"]`` is False.
    """
    augmentation(augment)  # an unknown augmentation is refused before any training
    if int(epochs) < 0:
        raise InputError(f"epochs must be >= 0, got {epochs}")
    train = labelled(train, "qat data")
    start = time.perf_counter()
    acc_float = accuracy(model, val) if val is not None else None
    folded, did_fold = _fold_bn(model)
    qmodel = prepare_qat(folded if did_fold else copy.deepcopy(model))
    call_progress(progress, "calibrating", 0.05)
    _calibrate(qmodel, train, batch_size, calibration_batches)
    acc_ptq = accuracy(qmodel, val) if val is not None else None
    call_progress(progress, "quantization-aware training", 0.1)
    tune_s = finetune(
        qmodel,
        train,
        val if val is not None else train,
        epochs=int(epochs),
        lr=lr,
        batch_size=batch_size,
        seed=seed,
        augment=augment,
    )
    call_progress(progress, "trained", 1.0)
    details: dict[str, Any] = {
        "augment": augmentation_name(augment),
        "epochs": int(epochs),
        "lr": lr,
        "bn_folded": did_fold,
        "weights": "int8 symmetric per channel",
        "activations": "int8 affine per tensor",
        "train_seconds": round(tune_s, 3),
    }
    notes: list[str] = []
    if val is not None:
        details.update(accuracy_float=acc_float, accuracy_fake_quant_before=acc_ptq)
        advice = "train longer (epochs) or keep this model in float"
        record_accuracy(details, notes, acc_float, accuracy(qmodel, val), max_drop, advice)
    return CompressResult(qmodel, details, time.perf_counter() - start, notes)


def export_qdq(
    model: nn.Module,
    path: str | Path,
    *,
    example: Batch | None = None,
    input_shape: Sequence[int] | None = None,
) -> Path:
    """Write a QAT model as a QDQ ONNX file (QuantizeLinear/DequantizeLinear around each op)."""
    x = example if example is not None else example_inputs(model, None, input_shape)
    frozen = copy.deepcopy(model).eval()
    for m in frozen.modules():
        if isinstance(m, _QuantBase):
            m.freeze()
    blob = fold_weight_quantization(export_onnx_bytes(frozen, x, opset=17))
    out = Path(path)
    atomic_write_bytes(out, blob)
    return out


def fold_weight_quantization(blob: bytes) -> bytes:
    """Store quantized weights as int8 initializers: QuantizeLinear over constants is computed
    once here, leaving DequantizeLinear(int8 weight) as post-training quantization writes it."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    model = onnx.load_from_string(blob)
    graph = model.graph
    consts: dict[str, np.ndarray] = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            consts[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    keep = []
    new_inits = []
    for node in graph.node:
        ins = list(node.input)
        if node.op_type == "QuantizeLinear" and len(ins) == 3 and all(i in consts for i in ins):
            w, scale, zero = (consts[i] for i in ins)
            axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
            shape = [1] * w.ndim
            if scale.ndim == 1 and w.ndim > 0:
                shape[axis] = -1
            q = np.rint(w / scale.reshape(shape)) + zero.astype(np.float32).reshape(shape)
            lo, hi = (-128, 127) if zero.dtype == np.int8 else (0, 255)
            arr = np.clip(q, lo, hi).astype(zero.dtype)
            new_inits.append(numpy_helper.from_array(arr, node.output[0]))
            consts[node.output[0]] = arr
        else:
            keep.append(node)
    used = {i for n in keep for i in n.input} | {o.name for o in graph.output}
    keep = [n for n in keep if n.op_type != "Constant" or n.output[0] in used]
    inits = [i for i in graph.initializer if i.name in used] + new_inits
    del graph.node[:]
    graph.node.extend(keep)
    del graph.initializer[:]
    graph.initializer.extend(inits)
    return bytes(model.SerializeToString())


@register_pass("qat", "torch")
def qat_pass(
    state: ModelState, params: Mapping[str, Any], ctx: PassContext
) -> tuple[ModelState, StepResult]:
    """Recipe pass ``qat``: params epochs, lr, batch_size, calibration_batches,
    augment, max_drop (the accuracy drop that warns).

    Ends the torch part of a recipe: the result is a QDQ ONNX model, so ONNX passes
    (fusion, but not another quantization) may follow.
    """
    if state.torch_model is None:
        raise PassError("qat needs a PyTorch model; the state holds none")
    train, val = train_val(_with_limit(ctx, params))
    torch.manual_seed(ctx.seed)
    res = qat(
        state.torch_model,
        train,
        val,
        epochs=int(param(params, "epochs", 3)),
        lr=float(param(params, "lr", 1e-4)),
        batch_size=int(param(params, "batch_size", 64)),
        calibration_batches=int(param(params, "calibration_batches", 8)),
        progress=ctx.progress,
        seed=ctx.seed,
        augment=param(params, "augment", None),
        max_drop=param(params, "max_drop", DEFAULT_MAX_DROP),
    )
    x = example_inputs(res.model, train, state.input_shape)
    path = export_qdq(res.model, Path(ctx.workdir) / "qat.onnx", example=x)
    new = dataclasses.replace(
        state,
        kind="onnx",
        onnx_path=path,
        torch_model=None,
        notes=[*state.notes, "quantization-aware trained, int8 QDQ"],
    )
    return new, StepResult("qat", dict(params), res.details, res.warnings, res.seconds)
