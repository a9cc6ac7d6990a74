"""Binary weights: 1 bit per weight plus one float scale per output channel.

Training keeps float "latent" weights; the forward pass uses ``alpha * sign(w)`` with ``alpha``
the mean absolute weight of each output channel (XNOR-Net's scale), and the backward pass
lets the gradient through ``sign`` where ``|w| <= 1`` (the clipped straight-through estimator).
By default the first and last layers keep float weights: they are small and binarizing them
costs the most accuracy.

The artifact (``.npz``) stores each binarized weight as ``np.packbits`` of its signs, with its
scales, every other tensor as float16 (or float32), and a JSON header (format, architecture,
shapes).
:func:`load_binary` unpacks it into an ordinary float module that exports to ONNX like any
other; the 1-bit saving is in storage and transmission, not in ONNX Runtime's kernels.
"""

from __future__ import annotations

import copy
import dataclasses
import io
import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from edgeloop._io import atomic_write_bytes, read_bytes
from edgeloop.errors import InputError, ModelFormatError, PassError
from edgeloop.optimize._passes import ModelState, PassContext, StepResult, register_pass
from edgeloop.optimize._torch_common import (
    DEFAULT_MAX_DROP,
    PRUNABLE,
    CompressResult,
    Progress,
    accuracy,
    batch_of,
    call,
    call_progress,
    finetune,
    head_layer,
    labelled,
    param,
    record_accuracy,
    resolve_modules,
    train_val,
)
from edgeloop.optimize._torch_common import (
    with_limit as _with_limit,
)
from edgeloop.zoo import Augment, augmentation, augmentation_name

__all__ = [
    "BINARY_FORMAT",
    "binarize",
    "fp32_bytes",
    "load_binary",
    "materialize",
    "save_binary",
]

BINARY_FORMAT = "edgeloop-binary-weights"
BINARY_VERSION = 1


class _SignSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, w: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(w)
        out: torch.Tensor = torch.where(w >= 0, 1.0, -1.0).to(w.dtype)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (w,) = ctx.saved_tensors
        out: torch.Tensor = grad * (w.abs() <= 1).to(grad.dtype)
        return out


def binary_weight(w: torch.Tensor) -> torch.Tensor:
    """``alpha * sign(w)`` with ``alpha`` = mean |w| per output channel."""
    alpha = w.abs().flatten(1).mean(dim=1).view(-1, *([1] * (w.dim() - 1)))
    signs: torch.Tensor = _SignSTE.apply(w)  # type: ignore[no-untyped-call]
    return alpha * signs


class BinaryLayer(nn.Module):
    """Wraps a Conv1d/Conv2d/Linear so its forward pass uses binarized weights."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        layer = self.layer
        if isinstance(layer, nn.Linear):
            return F.linear(x, binary_weight(layer.weight), layer.bias)
        assert isinstance(layer, nn.Conv1d | nn.Conv2d | nn.Conv3d)
        out: torch.Tensor = layer._conv_forward(x, binary_weight(layer.weight), layer.bias)
        return out


def _wrap(model: nn.Module, targets: set[int]) -> None:
    for name, child in list(model.named_children()):
        if id(child) in targets:
            setattr(model, name, BinaryLayer(child))
        else:
            _wrap(child, targets)


def materialize(model: nn.Module) -> nn.Module:
    """A plain float copy of a binarized model: wrappers removed, weights = alpha * sign."""
    out = copy.deepcopy(model)

    def unwrap(parent: nn.Module) -> None:
        for name, child in list(parent.named_children()):
            if isinstance(child, BinaryLayer):
                layer = child.layer
                assert isinstance(layer, PRUNABLE)
                with torch.no_grad():
                    layer.weight.copy_(binary_weight(layer.weight))
                setattr(parent, name, layer)
            else:
                unwrap(child)

    unwrap(out)
    return out.eval()


def binarize(
    model: nn.Module,
    train: Any,
    val: Any = None,
    *,
    epochs: int = 10,
    lr: float = 1e-3,
    batch_size: int = 64,
    keep: Sequence[str] = (),
    keep_first_last: bool = True,
    progress: Progress | None = None,
    seed: int = 0,
    augment: Augment | str | None = None,
    max_drop: float | None = DEFAULT_MAX_DROP,
) -> CompressResult:
    """Binarize the Conv/Linear weights of a copy of ``model`` and train it with the STE.

    ``keep`` names layers that stay float; with ``keep_first_last`` so do the first layer and
    the classifier head. Returns the float-equivalent module (see :func:`materialize`), with
    ``details['binarized']`` naming the binarized layers (what :func:`save_binary` packs).
    With ``val``, accuracy is measured before and after; a drop beyond ``max_drop`` (0.01 = 1
    point; None: no budget) is a warning in the result and ``details["within_budget"]`` is
    False.
    """
    augmentation(augment)  # an unknown augmentation is refused before any training
    if int(epochs) < 1:
        raise InputError(f"epochs must be >= 1, got {epochs}")
    train = labelled(train, "binarize data")
    x = batch_of(train, 1)
    work = copy.deepcopy(model).eval()
    names = {id(m): n for n, m in work.named_modules()}
    layers = [m for m in work.modules() if isinstance(m, PRUNABLE)]
    kept = set(map(id, resolve_modules(work, list(keep), "keep")))
    if keep_first_last and layers:
        from edgeloop.optimize._torch_common import LayerTracker

        tracker = LayerTracker(work)
        with torch.no_grad(), tracker.track():
            call(work, x)
        ran = [n for n in tracker.order if isinstance(dict(work.named_modules()).get(n), PRUNABLE)]
        head = head_layer(work, x)
        for n in ([ran[0]] if ran else []) + ([head] if head else []):
            kept.add(id(dict(work.named_modules())[n]))
    targets = [m for m in layers if id(m) not in kept]
    if not targets:
        raise PassError(f"{type(model).__name__}: no Conv/Linear layer left to binarize")
    binarized = [names[id(m)] for m in targets]
    acc0 = accuracy(work, val) if val is not None else None
    _wrap(work, set(map(id, targets)))
    call_progress(progress, "binary training", 0.0)
    start = time.perf_counter()
    tune_s = finetune(
        work,
        train,
        val if val is not None else train,
        epochs=int(epochs),
        lr=lr,
        batch_size=batch_size,
        seed=seed,
        augment=augment,
    )
    result = materialize(work)
    call_progress(progress, "binarized", 1.0)
    n_bin = sum(dict(result.named_modules())[n].weight.numel() for n in binarized)
    details: dict[str, Any] = {
        "augment": augmentation_name(augment),
        "epochs": int(epochs),
        "binarized": binarized,
        "kept_float": [names[i] for i in kept if i in names],
        "binary_weights": n_bin,
        "float_params": sum(p.numel() for p in result.parameters()) - n_bin,
        "train_seconds": round(tune_s, 3),
    }
    notes: list[str] = []
    if val is not None:
        advice = "keep more layers in float (keep) or train longer (epochs)"
        record_accuracy(details, notes, acc0, accuracy(result, val), max_drop, advice)
    return CompressResult(result, details, time.perf_counter() - start, notes)


def fp32_bytes(model: nn.Module) -> int:
    """Bytes of every floating-point tensor of the model stored as float32."""
    return 4 * sum(int(v.numel()) for v in model.state_dict().values() if v.is_floating_point())


def save_binary(
    model: nn.Module,
    path: str | Path,
    binarized: Sequence[str],
    *,
    arch: str | None = None,
    arch_kwargs: Mapping[str, Any] | None = None,
    input_shape: Sequence[int] | None = None,
    float_dtype: str = "float16",
) -> int:
    """Write the packed artifact; returns its size in bytes.

    ``model`` is the float-equivalent module :func:`binarize` returns; the weights of the
    ``binarized`` layers must be ``alpha * sign`` (checked, not re-binarized). The scales and
    every other floating tensor (biases, batch norms, kept layers) are stored as ``float_dtype``.
    The file is an ``.npz`` of four arrays (``bits``, ``scales``, ``floats``, ``header``) so
    that per-entry zip overhead stays small for small models.
    """
    if float_dtype not in ("float16", "float32"):
        raise InputError(f"float_dtype must be 'float16' or 'float32', got {float_dtype!r}")
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    bits, scales, floats = [], [], []
    entries: list[dict[str, Any]] = []
    for name in binarized:
        key = f"{name}.weight"
        if key not in state:
            raise PassError(f"save_binary: model has no layer {name!r} to pack")
        w = state.pop(key).flatten(1)
        scale = w.abs().amax(dim=1)
        if not torch.allclose(w.abs(), scale[:, None].expand_as(w)):
            raise PassError(f"save_binary: layer {name!r} does not hold binary weights")
        bits.append(np.packbits((w >= 0).numpy().reshape(-1)))
        scales.append(scale.numpy().astype(float_dtype))
        entries.append({"key": key, "kind": "binary", "shape": list(model.state_dict()[key].shape)})
    for key, v in state.items():
        if v.is_floating_point():
            floats.append(v.numpy().astype(float_dtype).reshape(-1))
            entries.append({"key": key, "kind": "float", "shape": list(v.shape)})
        else:
            entries.append(
                {"key": key, "kind": "int", "shape": list(v.shape), "value": v.reshape(-1).tolist()}
            )
    header = {
        "format": BINARY_FORMAT,
        "version": BINARY_VERSION,
        "arch": arch,
        "arch_kwargs": dict(arch_kwargs or {}),
        "input_shape": list(input_shape) if input_shape else None,
        "entries": entries,
    }
    buf = io.BytesIO()
    np.savez_compressed(
        buf,
        header=np.frombuffer(json.dumps(header, separators=(",", ":")).encode(), np.uint8),
        bits=np.concatenate(bits) if bits else np.zeros(0, np.uint8),
        scales=np.concatenate(scales) if scales else np.zeros(0, float_dtype),
        floats=np.concatenate(floats) if floats else np.zeros(0, float_dtype),
    )
    blob = buf.getvalue()
    atomic_write_bytes(Path(path), blob)
    return len(blob)


def read_binary(path: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The header and the unpacked float state dict of a binary-weights file."""
    blob = read_bytes(path, "binary-weights file")
    try:
        with np.load(io.BytesIO(blob), allow_pickle=False) as z:
            arrays = {k: z[k] for k in ("header", "bits", "scales", "floats")}
        header = json.loads(arrays["header"].tobytes().decode())
    except Exception as e:  # zip, npy, missing arrays and JSON errors alike
        raise ModelFormatError(f"{str(path)!r} is not an edgeloop binary-weights file: {e}") from e
    if not isinstance(header, dict) or header.get("format") != BINARY_FORMAT:
        got = header.get("format") if isinstance(header, dict) else header
        raise ModelFormatError(f"{str(path)!r}: expected format {BINARY_FORMAT!r}, got {got!r}")
    if int(header.get("version", 0)) > BINARY_VERSION:
        raise ModelFormatError(
            f"{str(path)!r}: format version {header['version']} is newer than {BINARY_VERSION}"
        )
    signs = np.unpackbits(arrays["bits"]).astype(np.float32) * 2 - 1
    floats = arrays["floats"].astype(np.float32)
    state: dict[str, torch.Tensor] = {}
    b = s = f = 0  # offsets into bits, scales and floats
    try:
        for entry in header["entries"]:
            shape = tuple(entry["shape"])
            n = int(np.prod(shape))
            if entry["kind"] == "binary":
                rows = shape[0]
                scale = arrays["scales"][s : s + rows, None].astype(np.float32)
                w = signs[b : b + n].reshape(rows, -1) * scale
                b += (n + 7) // 8 * 8
                s += rows
                state[entry["key"]] = torch.from_numpy(w.reshape(shape).copy())
            elif entry["kind"] == "float":
                state[entry["key"]] = torch.from_numpy(floats[f : f + n].reshape(shape).copy())
                f += n
            else:
                state[entry["key"]] = torch.tensor(entry["value"], dtype=torch.int64).reshape(shape)
    except (KeyError, ValueError) as e:
        raise ModelFormatError(f"{str(path)!r}: corrupt binary-weights file ({e})") from e
    return header, state


def load_binary(path: str | Path, model: nn.Module | None = None) -> nn.Module:
    """Unpack a binary-weights file into a float module: built from the zoo when ``model`` is
    None and the file names an architecture; for a user's own model pass a fresh instance."""
    header, state = read_binary(path)
    if model is None:
        if not header.get("arch"):
            raise InputError(
                f"{str(path)!r} holds a custom model: pass an instance of it as `model`"
            )
        from edgeloop.zoo import build_model

        model = build_model(header["arch"], **header.get("arch_kwargs", {}))
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise ModelFormatError(f"{str(path)!r} does not fit {type(model).__name__}: {e}") from e
    return model.eval()


@register_pass("binarize", "torch")
def binarize_pass(
    state: ModelState, params: Mapping[str, Any], ctx: PassContext
) -> tuple[ModelState, StepResult]:
    """Recipe pass ``binarize``: params epochs, lr, batch_size, keep, keep_first_last,
    augment, max_drop (the accuracy drop that warns).

    The next state is the float-equivalent model; the packed artifact is written to
    ``binary.npz`` in the work folder and its size reported next to the fp32 size.
    """
    if state.torch_model is None:
        raise PassError("binarize needs a PyTorch model; the state holds none")
    train, val = train_val(_with_limit(ctx, params))
    torch.manual_seed(ctx.seed)
    res = binarize(
        state.torch_model,
        train,
        val,
        epochs=int(param(params, "epochs", 10)),
        lr=float(param(params, "lr", 1e-3)),
        batch_size=int(param(params, "batch_size", 64)),
        keep=list(param(params, "keep", [])),
        keep_first_last=bool(param(params, "keep_first_last", True)),
        progress=ctx.progress,
        seed=ctx.seed,
        augment=param(params, "augment", None),
        max_drop=param(params, "max_drop", DEFAULT_MAX_DROP),
    )
    packed = Path(ctx.workdir) / "binary.npz"
    size = save_binary(
        res.model,
        packed,
        res.details["binarized"],
        arch=state.arch,
        arch_kwargs=state.arch_kwargs,
        input_shape=state.input_shape,
    )
    fp32 = fp32_bytes(res.model)
    res.details.update(
        packed_path=str(packed), packed_bytes=size, fp32_bytes=fp32, size_ratio=fp32 / size
    )
    new = dataclasses.replace(
        state,
        torch_model=res.model,
        notes=[*state.notes, f"binary weights ({size} bytes packed)"],
    )
    return new, StepResult("binarize", dict(params), res.details, res.warnings, res.seconds)
