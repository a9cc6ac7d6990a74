"""Structured pruning: remove whole channels, filters and heads with torch-pruning.

torch-pruning traces the model into a dependency graph, so removing the output channels of one
convolution also removes the matching input channels of every layer that consumes them (batch
norms, depthwise convolutions, residual additions, the classifier). The network really gets
smaller: fewer MACs, fewer parameters, lower latency. Layers a user protects, and the classifier
head, keep all their output channels.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import io
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812
import torch_pruning as tp
from torch import nn

from edgeloop.errors import InputError, PassError
from edgeloop.optimize._passes import ModelState, PassContext, StepResult, register_pass
from edgeloop.optimize._torch_common import (
    DEFAULT_MAX_DROP,
    CompressResult,
    Progress,
    accuracy,
    call,
    call_progress,
    check_ratio,
    example_inputs,
    finetune,
    head_layer,
    labelled,
    param,
    record_accuracy,
    resolve_modules,
    run_checked,
    tp_inputs,
    train_val,
)
from edgeloop.optimize._torch_common import (
    with_limit as _with_limit,
)
from edgeloop.zoo import Augment, augmentation, augmentation_name

__all__ = ["IMPORTANCES", "prune"]

IMPORTANCES = ("l1", "l2", "magnitude", "taylor")


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """torch-pruning prints notes to stdout and warns about unwrapped parameters; keep stdout
    clean for ``--json`` output."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


def _importance(name: str) -> Any:
    if name == "l1":  # L1 norm, summed over every layer of the dependency group
        return tp.importance.GroupMagnitudeImportance(p=1)
    if name == "l2":
        return tp.importance.GroupMagnitudeImportance(p=2)
    if name == "magnitude":  # classic filter pruning: only the pruned layer's own weights count
        return tp.importance.GroupMagnitudeImportance(p=1, group_reduction="first", normalizer=None)
    if name == "taylor":  # |weight * gradient|: needs a loss on real data
        return tp.importance.GroupTaylorImportance()
    raise InputError(f"unknown importance {name!r}; expected one of: {', '.join(IMPORTANCES)}")


def _out_channels(model: nn.Module) -> dict[str, int]:
    out: dict[str, int] = {}
    for name, m in model.named_modules():
        if isinstance(m, nn.Linear):
            out[name] = m.out_features
        elif isinstance(m, nn.Conv1d | nn.Conv2d | nn.Conv3d):
            out[name] = m.out_channels
        elif isinstance(m, nn.MultiheadAttention):
            out[name] = m.embed_dim
    return out


def _n_heads(block: nn.Module) -> int:
    return int(getattr(block, "heads", getattr(block, "num_heads", 0)))


def _qkv_blocks(model: nn.Module) -> list[nn.Module]:
    """Attention blocks with a fused ``qkv`` Linear, ``heads`` (or ``num_heads``) and
    ``head_dim`` attributes: the zoo's transformer and timm's ViT ``Attention`` follow it.
    They stay whole, and ``proj`` (which writes the residual stream) keeps the model width
    between blocks; the feed-forward layers between them are pruned."""
    return [
        m
        for m in model.modules()
        if isinstance(getattr(m, "qkv", None), nn.Linear)
        and _n_heads(m) > 0
        and isinstance(getattr(m, "head_dim", None), int)
    ]


def _taylor_grads(model: nn.Module, data: Any, batch_size: int, batches: int = 4) -> None:
    """Accumulate gradients of the loss on a few batches (what Taylor importance reads)."""
    from edgeloop.zoo import to_tensors

    ds = labelled(data, "pruning data (taylor importance)")
    model.train()
    model.zero_grad()
    for i, (xb, yb) in enumerate(ds.batches(batch_size)):
        if i >= batches:
            break
        loss = F.cross_entropy(call(model, to_tensors(xb)), torch.from_numpy(yb))
        loss.backward()  # type: ignore[no-untyped-call]
    model.eval()


def prune(
    model: nn.Module,
    *,
    ratio: float,
    data: Any = None,
    val: Any = None,
    input_shape: Sequence[int] | None = None,
    importance: str = "l2",
    steps: int = 1,
    global_pruning: bool = False,
    protect: Sequence[str] = (),
    layer_ratios: Mapping[str, float] | None = None,
    finetune_epochs: int = 0,
    lr: float = 3e-3,
    batch_size: int = 64,
    progress: Progress | None = None,
    seed: int = 0,
    augment: Augment | str | None = None,
    max_drop: float | None = DEFAULT_MAX_DROP,
) -> CompressResult:
    """Remove ``ratio`` of the channels of ``model`` (in place) in ``steps`` rounds.

    ``ratio`` is per layer unless ``global_pruning`` ranks every channel of the network
    together (then some layers lose more than others). ``layer_ratios`` overrides the ratio
    for named layers. Between rounds, and after the last, the model is fine-tuned on ``data``
    for ``finetune_epochs`` epochs with the zoo's training loop. ``protect`` names layers
    whose output channels stay whole; the classifier head is always protected.
    Everything is checked before the first channel is removed. With ``val``, accuracy is
    measured before and after; a drop beyond ``max_drop`` (0.01 = 1 point; None: no budget) is
    a warning in the result and ``details["within_budget"]`` is False.
    """
    augmentation(augment)  # an unknown augmentation is refused before any training
    ratio = check_ratio(ratio)
    overrides = {
        n: check_ratio(r, f"ratio of layer {n!r}") for n, r in (layer_ratios or {}).items()
    }
    imp = _importance(importance)
    if int(steps) < 1:
        raise InputError(f"steps must be >= 1, got {steps}")
    if finetune_epochs > 0 or importance == "taylor":
        labelled(data, "pruning data")
    x = example_inputs(model, data, input_shape)
    model.eval()
    run_checked(model, x, "before pruning")
    head = head_layer(model, x)
    protected = list(dict.fromkeys([*protect, *([head] if head else [])]))
    ignored = resolve_modules(model, protected, "protect")
    ratio_dict = dict(
        zip(
            resolve_modules(model, list(overrides), "layer_ratios"), overrides.values(), strict=True
        )
    )
    mha = {m: m.num_heads for m in model.modules() if isinstance(m, nn.MultiheadAttention)}
    blocks = _qkv_blocks(model)
    # torch-pruning 1.6 mis-couples a fused qkv projection split with reshape/unbind: keep those
    # attention blocks whole (their feed-forward layers are still pruned)
    for b in blocks:
        ignored += [m for m in (b.qkv, getattr(b, "proj", None)) if isinstance(m, nn.Module)]
    start = time.perf_counter()
    with _quiet():
        macs0, params0 = tp.utils.count_ops_and_params(model, tp_inputs(x))
    channels0 = _out_channels(model)
    acc0 = accuracy(model, val) if val is not None else None
    with _quiet():
        try:
            pruner = tp.pruner.MetaPruner(
                model,
                tp_inputs(x),
                importance=imp,
                global_pruning=global_pruning,
                pruning_ratio=ratio,
                pruning_ratio_dict=ratio_dict or None,
                iterative_steps=int(steps),
                ignored_layers=ignored,
                num_heads=mha,
                prune_num_heads=bool(mha),  # whole heads of nn.MultiheadAttention
                prune_head_dims=False,
                head_pruning_ratio=ratio if mha else 0.0,
            )
        except Exception as e:  # torch-pruning raises plain exceptions when it cannot trace
            raise PassError(
                f"torch-pruning cannot trace {type(model).__name__}: {type(e).__name__}: {e}"
            ) from e
    history: list[dict[str, Any]] = []
    tune_s = 0.0
    for step in range(int(steps)):
        call_progress(progress, f"pruning step {step + 1}/{steps}", step / steps)
        if importance == "taylor":
            _taylor_grads(model, data, batch_size)
        with _quiet():
            try:
                pruner.step()
            except Exception as e:
                raise PassError(
                    f"torch-pruning failed on {type(model).__name__} at step {step + 1}: "
                    f"{type(e).__name__}: {e}"
                ) from e
        model.zero_grad(set_to_none=True)
        run_checked(model, x, f"after pruning step {step + 1}")
        entry: dict[str, Any] = {"step": step + 1}
        if val is not None:
            entry["accuracy_pruned"] = accuracy(model, val)
        if finetune_epochs > 0:
            train, _ = data, val
            tune_s += finetune(
                model,
                train,
                val if val is not None else data,
                epochs=finetune_epochs,
                lr=lr,
                batch_size=batch_size,
                seed=seed + step,
                augment=augment,
            )
            if val is not None:
                entry["accuracy_finetuned"] = accuracy(model, val)
        history.append(entry)
    with _quiet():
        macs1, params1 = tp.utils.count_ops_and_params(model, tp_inputs(x))
    channels1 = _out_channels(model)
    call_progress(progress, "pruned", 1.0)
    layers = {n: [c, channels1.get(n, c)] for n, c in channels0.items()}
    shrunk = [n for n, (a, b) in layers.items() if b < a]
    details: dict[str, Any] = {
        "augment": augmentation_name(augment),
        "ratio": ratio,
        "importance": importance,
        "steps": int(steps),
        "global": bool(global_pruning),
        "protected": protected,
        "macs_before": int(macs0),
        "macs_after": int(macs1),
        "params_before": int(params0),
        "params_after": int(params1),
        "macs_kept": float(macs1) / float(macs0) if macs0 else None,
        "layers": layers,
        "history": history,
        "finetune_seconds": round(tune_s, 3),
    }
    notes: list[str] = []
    if not shrunk:
        notes.append("no layer lost channels: torch-pruning found nothing it could remove")
    if acc0 is not None:
        last = history[-1]
        acc1 = last.get("accuracy_finetuned", last.get("accuracy_pruned"))
        advice = "lower the ratio, prune in more steps or fine-tune longer (finetune_epochs)"
        record_accuracy(details, notes, acc0, acc1, max_drop, advice)
    history_ = [[n, bool(o), [int(i) for i in idx]] for n, o, idx in pruner.pruning_history()]
    return CompressResult(
        model, details, time.perf_counter() - start, notes, {"pruning_history": history_}
    )


def _with_history(meta: Mapping[str, Any], history: list[Any]) -> dict[str, Any]:
    """Checkpoint metadata that records the pruning, so a saved checkpoint can be rebuilt."""
    extra = dict(meta.get("extra") or {})
    extra["pruning_history"] = [*extra.get("pruning_history", []), *history]
    return {**meta, "extra": extra}


@register_pass("prune", "torch")
def prune_pass(
    state: ModelState, params: Mapping[str, Any], ctx: PassContext
) -> tuple[ModelState, StepResult]:
    """Recipe pass ``prune``: params ratio, importance, steps, global, protect, finetune_epochs,
    lr, batch_size, layer_ratios, augment (of the fine-tuning batches), max_drop (the
    accuracy drop that warns)."""
    if state.torch_model is None:
        raise PassError("prune needs a PyTorch model; the state holds none")
    train, val = train_val(_with_limit(ctx, params))
    torch.manual_seed(ctx.seed)
    res = prune(
        copy.deepcopy(state.torch_model),
        ratio=param(params, "ratio", 0.5),
        data=train,
        val=val,
        input_shape=state.input_shape,
        importance=str(param(params, "importance", "l2")),
        steps=int(param(params, "steps", 1)),
        global_pruning=bool(param(params, "global", False)),
        protect=list(param(params, "protect", [])),
        layer_ratios=param(params, "layer_ratios", None),
        finetune_epochs=int(param(params, "finetune_epochs", 0)),
        lr=float(param(params, "lr", 3e-3)),
        batch_size=int(param(params, "batch_size", 64)),
        progress=ctx.progress,
        seed=ctx.seed,
        augment=param(params, "augment", None),
        max_drop=param(params, "max_drop", DEFAULT_MAX_DROP),
    )
    new = dataclasses.replace(
        state,
        torch_model=res.model,
        notes=[*state.notes, f"pruned {res.details['ratio']:.0%} of channels"],
        meta=_with_history(state.meta, res.artifacts["pruning_history"]),
    )
    step = StepResult("prune", dict(params), res.details, res.warnings, res.seconds)
    return new, step
