"""Unstructured magnitude pruning: zero the smallest weights with ``torch.nn.utils.prune``.

Zeros do not make a dense kernel faster: ONNX Runtime multiplies them like any other weight.
What they buy is a model file that compresses well, so it costs less to send to a device. The
pass reports sparsity per layer and the artifact's size raw, zlib- and lzma-compressed.
"""

from __future__ import annotations

import copy
import dataclasses
import lzma
import time
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.nn.utils import prune as tprune

from edgeloop.optimize._passes import ModelState, PassContext, StepResult, register_pass
from edgeloop.optimize._torch_common import (
    DEFAULT_MAX_DROP,
    PRUNABLE,
    CompressResult,
    Progress,
    accuracy,
    call_progress,
    check_ratio,
    example_inputs,
    export_onnx_bytes,
    finetune,
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

__all__ = ["compressed_sizes", "sparsify", "sparsity_stats"]

NOTE = "zeros shrink the compressed download, not the latency: dense kernels still multiply them"


def compressed_sizes(blob: bytes) -> dict[str, int]:
    """Raw, zlib (level 9) and lzma (preset 6) sizes of an artifact, in bytes."""
    return {"raw": len(blob), "zlib": len(zlib.compress(blob, 9)), "lzma": len(lzma.compress(blob))}


def sparsity_stats(model: nn.Module) -> dict[str, dict[str, float]]:
    """Per Conv/Linear layer: weight count, zeros and the fraction that is zero."""
    out: dict[str, dict[str, float]] = {}
    for name, m in model.named_modules():
        if isinstance(m, PRUNABLE):
            w = m.weight.detach()
            zeros = int((w == 0).sum())
            out[name] = {"weights": w.numel(), "zeros": zeros, "sparsity": zeros / w.numel()}
    return out


def sparsify(
    model: nn.Module,
    *,
    sparsity: float,
    layers: Sequence[str] | None = None,
    global_pruning: bool = False,
    data: Any = None,
    val: Any = None,
    input_shape: Sequence[int] | None = None,
    finetune_epochs: int = 0,
    lr: float = 1e-3,
    batch_size: int = 64,
    progress: Progress | None = None,
    seed: int = 0,
    augment: Augment | str | None = None,
    max_drop: float | None = DEFAULT_MAX_DROP,
) -> CompressResult:
    """Zero the ``sparsity`` fraction of smallest-magnitude weights (in place).

    Each layer loses the same fraction unless ``global_pruning`` ranks the weights of every
    layer together (which can empty a layer whose weights are small, e.g. a wide classifier).
    ``layers`` limits the pass to named layers (default: every Conv and Linear). With
    ``finetune_epochs`` the surviving weights are retrained with the mask held. With ``val``,
    accuracy is measured before and after; a drop beyond ``max_drop`` (0.01 = 1 point; None:
    no budget) is a warning in the result and ``details["within_budget"]`` is False.
    """
    augmentation(augment)  # an unknown augmentation is refused before any training
    sparsity = check_ratio(sparsity, "sparsity")
    if finetune_epochs > 0:
        labelled(data, "sparsify data")
    targets = (
        resolve_modules(model, list(layers), "layers")
        if layers
        else [m for m in model.modules() if isinstance(m, PRUNABLE)]
    )
    x = example_inputs(model, data, input_shape)
    start = time.perf_counter()
    before = compressed_sizes(export_onnx_bytes(copy.deepcopy(model), x))
    acc0 = accuracy(model, val) if val is not None else None
    call_progress(progress, "sparsifying", 0.1)
    pairs = [(m, "weight") for m in targets]
    if global_pruning:
        tprune.global_unstructured(pairs, pruning_method=tprune.L1Unstructured, amount=sparsity)
    else:
        for m, name in pairs:
            tprune.l1_unstructured(m, name, amount=sparsity)  # type: ignore[no-untyped-call]
    tune_s = 0.0
    if finetune_epochs > 0:
        tune_s = finetune(
            model,
            data,
            val if val is not None else data,
            epochs=finetune_epochs,
            lr=lr,
            batch_size=batch_size,
            seed=seed,
            augment=augment,
        )
    for m, name in pairs:
        tprune.remove(m, name)  # type: ignore[no-untyped-call]  # make the zeros permanent, drop the mask
    after = compressed_sizes(export_onnx_bytes(copy.deepcopy(model), x))
    stats = sparsity_stats(model)
    total = sum(s["weights"] for s in stats.values())
    zeros = sum(s["zeros"] for s in stats.values())
    call_progress(progress, "sparsified", 1.0)
    details: dict[str, Any] = {
        "augment": augmentation_name(augment),
        "sparsity_target": sparsity,
        "sparsity": zeros / total if total else 0.0,
        "global": bool(global_pruning),
        "layers": stats,
        "onnx_bytes_before": before,
        "onnx_bytes_after": after,
        "zlib_ratio": before["zlib"] / after["zlib"] if after["zlib"] else None,
        "finetune_seconds": round(tune_s, 3),
        "note": NOTE,
    }
    warnings = [NOTE]
    if val is not None:
        advice = "lower the sparsity or fine-tune (finetune_epochs)"
        record_accuracy(details, warnings, acc0, accuracy(model, val), max_drop, advice)
    return CompressResult(model, details, time.perf_counter() - start, warnings)


@register_pass("sparsify", "torch")
def sparsify_pass(
    state: ModelState, params: Mapping[str, Any], ctx: PassContext
) -> tuple[ModelState, StepResult]:
    """Recipe pass ``sparsify``: params sparsity, layers, global, finetune_epochs, lr,
    augment, max_drop (the accuracy drop that warns)."""
    from edgeloop.errors import PassError

    if state.torch_model is None:
        raise PassError("sparsify needs a PyTorch model; the state holds none")
    train, val = train_val(_with_limit(ctx, params))
    torch.manual_seed(ctx.seed)
    res = sparsify(
        copy.deepcopy(state.torch_model),
        sparsity=param(params, "sparsity", 0.5),
        layers=param(params, "layers", None),
        global_pruning=bool(param(params, "global", False)),
        data=train,
        val=val,
        input_shape=state.input_shape,
        finetune_epochs=int(param(params, "finetune_epochs", 0)),
        lr=float(param(params, "lr", 1e-3)),
        batch_size=int(param(params, "batch_size", 64)),
        progress=ctx.progress,
        seed=ctx.seed,
        augment=param(params, "augment", None),
        max_drop=param(params, "max_drop", DEFAULT_MAX_DROP),
    )
    new = dataclasses.replace(
        state,
        torch_model=res.model,
        notes=[*state.notes, f"{res.details['sparsity']:.0%} of weights zeroed"],
    )
    return new, StepResult("sparsify", dict(params), res.details, res.warnings, res.seconds)
