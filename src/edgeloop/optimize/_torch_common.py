"""Helpers shared by the PyTorch passes (prune, sparsify, distill, qat, binarize).

This module imports torch: only the torch passes import it, so an ONNX-only recipe never does.
Training goes through the zoo's ``fit`` loop; this module only adapts data, finds layers and
turns failures inside a forward pass into errors that name the layer.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edgeloop.errors import DataError, InputError, PassError, UnknownNameError

__all__ = [
    "Batch",
    "CompressResult",
    "LayerTracker",
    "Progress",
    "DEFAULT_MAX_DROP",
    "accuracy",
    "accuracy_budget",
    "record_accuracy",
    "as_dataset",
    "batch_of",
    "call",
    "example_inputs",
    "finetune",
    "head_layer",
    "labelled",
    "metric",
    "model_metric",
    "named_layers",
    "resolve_modules",
    "tp_inputs",
]

Progress = Callable[[str, float], None]
Batch = torch.Tensor | dict[str, torch.Tensor]
PRUNABLE = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


@dataclass
class CompressResult:
    """What a compression function returns: the (new) model and what was done to it."""

    model: nn.Module
    details: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)
    # what is needed to save the result but not worth reporting (e.g. the pruning history)
    artifacts: dict[str, Any] = field(default_factory=dict)


def as_dataset(data: Any, what: str = "dataset") -> Any:
    """An ``edgeloop.data.Dataset``: one given as is, or ``(x, y)`` arrays wrapped in one."""
    from edgeloop.data import Dataset

    if isinstance(data, Dataset):
        return data
    if isinstance(data, tuple | list) and len(data) == 2:
        x, y = data
        xs = {k: np.asarray(v) for k, v in x.items()} if isinstance(x, Mapping) else np.asarray(x)
        if not isinstance(xs, dict) and xs.dtype == np.float64:
            xs = xs.astype(np.float32)
        ys = None if y is None else np.asarray(y).astype(np.int64)
        n_cls = int(ys.max()) + 1 if ys is not None and len(ys) else 0
        return Dataset(
            name="arrays",
            task="classification",
            x=xs,
            y=ys,
            classes=tuple(str(i) for i in range(n_cls)),
            split="train",
        )
    raise DataError(f"{what}: expected an edgeloop Dataset or an (x, y) pair, got {type(data)}")


def labelled(data: Any, what: str) -> Any:
    """A Dataset that has labels (classification training needs them)."""
    ds = as_dataset(data, what)
    if ds.y is None:
        raise DataError(f"{what} {ds.name!r} has no labels; this pass trains on labelled data")
    if len(ds) == 0:
        raise DataError(f"{what} {ds.name!r} is empty")
    return ds


def batch_of(data: Any, n: int = 1) -> Batch:
    """The first ``n`` samples of a dataset as a model batch (tensor or dict of tensors)."""
    from edgeloop.zoo import to_tensors

    ds = as_dataset(data)
    x = ds.x
    rows = {k: v[:n] for k, v in x.items()} if isinstance(x, dict) else x[:n]
    out: Batch = to_tensors(rows)
    return out


def call(model: nn.Module, batch: Batch) -> torch.Tensor:
    """Run ``model`` on a batch (several inputs are passed positionally, in order)."""
    from edgeloop.zoo import forward

    out: torch.Tensor = forward(model, batch)
    return out


def example_inputs(
    model: nn.Module, data: Any = None, input_shape: Sequence[int] | None = None
) -> Batch:
    """One real sample when data is given (right dtypes for token models), else zeros."""
    if data is not None:
        return batch_of(data, 1)
    if input_shape is None:
        raise PassError(
            f"{type(model).__name__}: need data or an input shape to trace the model; give one"
        )
    return torch.zeros((1, *input_shape))


def tp_inputs(batch: Batch) -> Any:
    """The batch as torch-pruning passes it to the model (a dict becomes keyword arguments)."""
    return dict(batch) if isinstance(batch, dict) else batch


def metric(model: nn.Module, data: Any) -> float:
    """The task's primary metric (accuracy; ROC AUC for anomaly) of ``model`` on ``data``."""
    from edgeloop.zoo import evaluate_model, primary_metric

    ds = as_dataset(data)
    was_training = model.training
    scores = evaluate_model(model, ds)
    model.train(was_training)
    return float(scores.get(primary_metric(ds.task), float("nan")))


accuracy = metric


# the public name (``edgeloop.optimize.model_metric``): "metric" alone says too little there
model_metric = metric


def finetune(
    model: nn.Module,
    train: Any,
    val: Any,
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    loss_fn: Callable[..., torch.Tensor] | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    seed: int = 0,
    augment: Any = None,
) -> float:
    """Train with the zoo's ``fit`` loop; returns the seconds it took."""
    if epochs <= 0:
        return 0.0
    from edgeloop.zoo import fit

    start = time.perf_counter()
    fit(
        model,
        as_dataset(train, "training data"),
        None if val is None else as_dataset(val, "validation data"),
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        loss_fn=loss_fn,
        optimizer=optimizer,
        seed=seed,
        augment=augment,
    )
    model.eval()
    return time.perf_counter() - start


def named_layers(model: nn.Module) -> dict[str, nn.Module]:
    return dict(model.named_modules())


def resolve_modules(model: nn.Module, names: Sequence[str], what: str) -> list[nn.Module]:
    """Modules by dotted name; an unknown name is refused, listing a few real ones."""
    layers = named_layers(model)
    out = []
    for name in names:
        if name not in layers or name == "":
            known = ", ".join(n for n, m in layers.items() if n and isinstance(m, PRUNABLE))
            raise UnknownNameError(f"{what}: no layer named {name!r}; layers: {known}")
        out.append(layers[name])
    return out


class LayerTracker:
    """Forward hooks that remember which leaf layer ran last, to name a failing one."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.names = {id(m): n for n, m in model.named_modules()}
        self.last: str | None = None  # the last leaf layer that finished
        self.entered: str | None = None  # the last leaf layer that started
        self.order: list[str] = []
        self.outputs: dict[str, Any] = {}

    @contextlib.contextmanager
    def track(self) -> Iterator[LayerTracker]:
        handles = []
        for name, module in self.model.named_modules():
            if name and not any(True for _ in module.children()):
                handles.append(module.register_forward_pre_hook(self._enter))
                handles.append(module.register_forward_hook(self._hook))
        try:
            yield self
        finally:
            for h in handles:
                h.remove()

    def _enter(self, module: nn.Module, args: Any) -> None:
        self.entered = self.names.get(id(module), type(module).__name__)

    def where(self) -> str:
        """Where a failing forward pass stopped, in words."""
        if self.entered is not None and self.entered != self.last:
            return f"in layer {self.entered!r}"
        return f"after layer {self.last!r}" if self.last else "before the first layer"

    def _hook(self, module: nn.Module, args: Any, output: Any) -> None:
        name = self.names.get(id(module), type(module).__name__)
        self.last = name
        self.order.append(name)
        self.outputs[name] = output


def run_checked(model: nn.Module, x: Batch, when: str) -> torch.Tensor:
    """Run a forward pass; a failure names the last layer that ran before it."""
    tracker = LayerTracker(model)
    try:
        with tracker.track():
            out = model(*x.values()) if isinstance(x, dict) else model(x)
    except Exception as e:  # a user's model may raise anything here
        where = tracker.where()
        hint = (
            ". The model probably hard-codes a channel count (e.g. in view/reshape) that the "
            "dependency graph cannot see; protect that layer or compute the shape from the tensor"
            if "pruning" in when
            else ""
        )
        raise PassError(f"{type(model).__name__} failed {when}, {where}: {e}{hint}") from e
    if not isinstance(out, torch.Tensor):
        raise PassError(
            f"{type(model).__name__} returns {type(out).__name__}; these passes need a model "
            f"that returns one tensor"
        )
    return out


def head_layer(model: nn.Module, x: Batch) -> str | None:
    """The name of the last Conv/Linear that runs in a forward pass (the classifier head)."""
    tracker = LayerTracker(model)
    layers = named_layers(model)
    with torch.no_grad(), tracker.track():
        call(model.eval(), x)
    for name in reversed(tracker.order):
        if isinstance(layers.get(name), PRUNABLE):
            return name
    return None


# How far a compression pass may lower validation accuracy (0.01 = 1 point) before it warns.
DEFAULT_MAX_DROP = 0.01


def accuracy_budget(
    before: float | None, after: float | None, max_drop: float | None, advice: str
) -> tuple[dict[str, Any], str | None]:
    """Details on the accuracy change and, when it exceeds ``max_drop``, a warning to show.

    Returns ``({}, None)`` when either figure is missing (no validation data) or no budget.
    """
    if before is None or after is None:
        return {}, None
    drop = float(before) - float(after)
    details: dict[str, Any] = {"accuracy_drop": drop, "max_drop": max_drop}
    if max_drop is None:
        return details, None
    within = drop <= max_drop + 1e-12
    details["within_budget"] = within
    if within:
        return details, None
    return details, (
        f"val accuracy fell {100 * drop:.2f} points, {100 * before:.2f}% -> {100 * after:.2f}%,"
        f" beyond the {100 * max_drop:.2f}-point budget (max_drop); {advice}"
    )


def record_accuracy(
    details: dict[str, Any],
    warnings: list[str],
    before: float | None,
    after: float | None,
    max_drop: float | None,
    advice: str,
) -> None:
    """The one accuracy report of every compression pass (prune, sparsify, qat, binarize).

    Puts ``accuracy_before``/``accuracy_after`` and :func:`accuracy_budget`'s figures
    (``accuracy_drop``, ``max_drop``, ``within_budget``) in ``details``; a drop beyond
    ``max_drop`` puts its warning first in ``warnings``, where the CLI shows it loudly.
    """
    details["accuracy_before"] = before
    details["accuracy_after"] = after
    budget, warning = accuracy_budget(before, after, max_drop, advice)
    details.update(budget)
    if warning is not None:
        warnings.insert(0, warning)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def call_progress(progress: Progress | None, message: str, fraction: float) -> None:
    if progress is not None:
        progress(message, max(0.0, min(1.0, fraction)))


def check_ratio(value: float, name: str = "ratio") -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a number in (0, 1), got {value!r}") from None
    if not 0.0 < v < 1.0:
        raise InputError(f"{name} must be in (0, 1) (exclusive), got {v}")
    return v


def param(params: Mapping[str, Any], key: str, default: Any) -> Any:
    return params[key] if key in params and params[key] is not None else default


def train_val(ctx: Any) -> tuple[Any, Any]:
    """The training and validation splits for a pass, from its context.

    ``options['train_data']``/``options['val_data']`` win when given. Otherwise ``ctx.data``
    (what the user passed to ``optimize``) is resolved: a dataset name or a data file gives its
    ``train`` and ``val`` splits; a Dataset is used for training, with no validation split.
    ``options['train_samples']`` (a pass's ``train_samples`` param) keeps the first N samples.
    """
    opts = getattr(ctx, "options", None) or {}
    train, val = opts.get("train_data"), opts.get("val_data")
    if train is None:
        train, val = _resolve_splits(ctx)
    limit = opts.get("train_samples")
    if train is not None and limit:
        train = as_dataset(train).subset(int(limit))
    return train, val


def _resolve_splits(ctx: Any) -> tuple[Any, Any]:
    data = ctx.data
    if data is None:
        return None, None
    if isinstance(data, str | Path):
        from edgeloop.data import load_dataset

        seed = int(getattr(ctx, "seed", 0))
        return load_dataset(data, "train", seed=seed), load_dataset(data, "val", seed=seed)
    if hasattr(data, "x") and hasattr(data, "task"):
        return data, None
    raise DataError(
        f"training passes need a labelled dataset (a name, a data file or a Dataset); "
        f"got {type(data).__name__}"
    )


def export_onnx_bytes(model: nn.Module, x: Batch, opset: int = 17) -> bytes:
    """Export with the TorchScript exporter (batch axis dynamic) and return the ONNX bytes.

    The TorchScript exporter is the one that turns fake-quant ops into QuantizeLinear /
    DequantizeLinear pairs, so the QAT pass needs it; the other passes use it for size figures.
    """
    import io

    from edgeloop.zoo import torch_to_onnx

    buf = io.BytesIO()
    model.eval()
    names = list(x) if isinstance(x, dict) else ["input"]
    args = tuple(x.values()) if isinstance(x, dict) else (x,)
    torch_to_onnx(
        model,
        args,
        buf,
        input_names=names,
        output_names=["output"],
        opset=opset,
        exporter="torchscript",
    )
    return buf.getvalue()


def with_limit(ctx: Any, params: Mapping[str, Any]) -> Any:
    """The context with a pass's ``train_samples`` param moved into its options."""
    n = params.get("train_samples")
    if not n:
        return ctx
    import dataclasses

    return dataclasses.replace(ctx, options={**(ctx.options or {}), "train_samples": int(n)})
