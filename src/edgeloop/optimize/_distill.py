"""Knowledge distillation: a small student learns from a larger teacher's soft targets.

The loss is ``alpha * T^2 * KL(softmax(teacher/T) || softmax(student/T)) + (1 - alpha) * CE``
(Hinton et al., 2015), optionally plus the mean squared error between intermediate features of
named layer pairs (FitNets), with a learned 1x1 projection where the channel counts differ.
The student is checked against the teacher on one batch before any training starts.

Unlabelled inputs can join the labelled ones (``unlabeled=``): the teacher's soft targets need
no labels, so they teach on them and the label loss skips them (Hinton et al.'s transfer set).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - the usual name
import torch_pruning as tp
from torch import nn

from edgeloop.errors import InputError, PassError
from edgeloop.optimize._passes import ModelState, PassContext, StepResult, register_pass
from edgeloop.optimize._torch_common import (
    Batch,
    CompressResult,
    Progress,
    accuracy,
    as_dataset,
    batch_of,
    call,
    call_progress,
    finetune,
    labelled,
    param,
    resolve_modules,
    run_checked,
    tp_inputs,
    train_val,
)
from edgeloop.optimize._torch_common import (
    with_limit as _with_limit,
)
from edgeloop.zoo import Augment, augmentation, augmentation_name

__all__ = ["distill", "distillation_loss"]

_PROJECTIONS = "distill_feature_projections"


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    temperature: float,
    alpha: float,
) -> torch.Tensor:
    """Soft-target KL at temperature ``T`` (scaled by T^2) mixed with hard-label CE.

    A label of -1 marks an unlabelled sample: it counts in the soft term only (a batch with no
    labelled sample has a hard term of zero).
    """
    t = temperature
    soft = F.kl_div(
        F.log_softmax(student_logits / t, dim=-1),
        F.softmax(teacher_logits / t, dim=-1),
        reduction="batchmean",
    ) * (t * t)
    labels = labels.long()
    known = labels >= 0
    if bool(known.all()):
        hard = F.cross_entropy(student_logits, labels)
    elif bool(known.any()):
        hard = F.cross_entropy(student_logits[known], labels[known])
    else:
        hard = student_logits.sum() * 0.0
    return alpha * soft + (1.0 - alpha) * hard


class _Capture:
    """Forward hooks that keep the latest output of named layers."""

    def __init__(self, model: nn.Module, names: Sequence[str], what: str) -> None:
        self.values: dict[str, torch.Tensor] = {}
        mods = resolve_modules(model, list(names), what)
        self.handles = [
            m.register_forward_hook(self._hook(n)) for n, m in zip(names, mods, strict=True)
        ]

    def _hook(self, name: str) -> Any:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            self.values[name] = output

        return hook

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def _projection(s_shape: torch.Size, t_shape: torch.Size, pair: tuple[str, str]) -> nn.Module:
    """A learned map from the student's feature channels to the teacher's (dim 1)."""
    if len(s_shape) != len(t_shape):
        raise PassError(
            f"feature pair {pair}: student feature has shape {tuple(s_shape)}, teacher "
            f"{tuple(t_shape)}; expected the same number of dimensions"
        )
    if len(s_shape) == 4:
        return nn.Conv2d(s_shape[1], t_shape[1], 1, bias=False)
    if len(s_shape) == 3:
        return nn.Conv1d(s_shape[1], t_shape[1], 1, bias=False)
    return nn.Linear(s_shape[-1], t_shape[-1], bias=False)


def _match(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Resize the teacher feature to the student's spatial size (average pooling)."""
    if s.dim() == 4 and s.shape[2:] != t.shape[2:]:
        return F.adaptive_avg_pool2d(t, (int(s.shape[2]), int(s.shape[3])))
    if s.dim() == 3 and s.shape[2:] != t.shape[2:]:
        return F.adaptive_avg_pool1d(t, s.shape[2])
    return t


def _macs(model: nn.Module, x: Batch) -> int:
    macs, _ = tp.utils.count_ops_and_params(model, tp_inputs(x))
    return int(macs)


def distill(
    teacher: nn.Module,
    student: nn.Module,
    train: Any,
    val: Any = None,
    *,
    temperature: float = 2.0,
    alpha: float = 0.5,
    epochs: int = 5,
    lr: float = 3e-3,
    batch_size: int = 64,
    features: Sequence[tuple[str, str]] = (),
    feature_weight: float = 1.0,
    progress: Progress | None = None,
    seed: int = 0,
    augment: Augment | str | None = None,
    unlabeled: Any = None,
) -> CompressResult:
    """Train ``student`` (in place) on ``train`` with ``teacher``'s soft targets.

    ``unlabeled`` (a Dataset, or an array of inputs shaped like ``train``'s) adds inputs
    without labels: the student learns the teacher's soft targets on them too (their labels,
    if any, are ignored). It needs ``alpha > 0``.

    ``features`` pairs a student layer with a teacher layer (dotted names) whose outputs are
    matched with mean squared error relative to the teacher feature's mean square, weighted by
    ``feature_weight``. ``augment`` (e.g. ``"shift"``) transforms each training batch, and the
    teacher scores the same augmented batch the student sees: with a small labelled set this is
    what makes soft targets worth more than the labels (docs/compress.md measures it). Raises
    before training if the student's outputs do not have the teacher's shape, a layer name is
    unknown, or the unlabelled inputs are not shaped like the labelled ones.
    """
    augmentation(augment)  # an unknown augmentation is refused before any training
    if teacher is student:
        raise InputError("the student must be a different module from the teacher")
    if not temperature > 0:
        raise InputError(f"temperature must be > 0, got {temperature}")
    if not 0.0 <= alpha <= 1.0:
        raise InputError(f"alpha must be in [0, 1], got {alpha}")
    if int(epochs) < 1:
        raise InputError(f"epochs must be >= 1, got {epochs}")
    train = labelled(train, "distillation data")
    scored = train  # the labelled samples: fit scores on them when there is no val split
    if unlabeled is not None:
        if alpha <= 0:
            raise InputError(
                "unlabelled data needs alpha > 0: with alpha = 0 only labels teach, and it has none"
            )
        train = _join(train, _unlabelled(unlabeled, train))
    probe = batch_of(train, 2)
    teacher.eval()
    student.eval()
    with torch.no_grad():
        t_out = run_checked(teacher, probe, "on the distillation data (as the teacher)")
        s_out = run_checked(student, probe, "on the distillation data (as the student)")
    if t_out.shape != s_out.shape:
        raise PassError(
            f"student {type(student).__name__} outputs shape {tuple(s_out.shape)} but teacher "
            f"{type(teacher).__name__} outputs {tuple(t_out.shape)}; they must match "
            f"(same number of classes)"
        )
    pairs = [(str(a), str(b)) for a, b in features]
    s_cap = _Capture(student, [a for a, _ in pairs], "student feature layer")
    t_cap = _Capture(teacher, [b for _, b in pairs], "teacher feature layer")
    projections = nn.ModuleDict()
    with torch.no_grad():
        call(teacher, probe), call(student, probe)
    for i, (a, b) in enumerate(pairs):
        projections[str(i)] = _projection(s_cap.values[a].shape, t_cap.values[b].shape, (a, b))
    one = batch_of(train, 1)
    macs_t, macs_s = _macs(teacher, one), _macs(student, one)
    acc_t = accuracy(teacher, val) if val is not None else None
    for p in teacher.parameters():
        p.requires_grad_(False)

    def loss_fn(model: nn.Module, xb: Batch, yb: torch.Tensor | None) -> torch.Tensor:
        if yb is None:
            raise PassError("distillation needs labelled data")
        with torch.no_grad():
            t_logits = call(teacher, xb)
        s_logits = call(model, xb)
        loss = distillation_loss(s_logits, t_logits, yb, temperature, alpha)
        for i, (a, b) in enumerate(pairs):
            s_feat = projections[str(i)](s_cap.values[a])
            target = _match(s_feat, t_cap.values[b])
            # relative to the teacher feature's energy, so its scale does not swamp the logits
            rel = F.mse_loss(s_feat, target) / (target.pow(2).mean() + 1e-8)
            loss = loss + feature_weight * rel
        return loss

    # the projections train with the student (fit's optimizer and schedule), then go away
    student.add_module(_PROJECTIONS, projections)
    call_progress(progress, "distilling", 0.0)
    start = time.perf_counter()
    try:
        finetune(
            student,
            train,
            val if val is not None else scored,
            epochs=int(epochs),
            lr=lr,
            batch_size=batch_size,
            loss_fn=loss_fn,
            seed=seed,
            augment=augment,
        )
    finally:
        del student._modules[_PROJECTIONS]
        s_cap.remove()
        t_cap.remove()
        for p in teacher.parameters():
            p.requires_grad_(True)
    seconds = time.perf_counter() - start
    call_progress(progress, "distilled", 1.0)
    details: dict[str, Any] = {
        "augment": augmentation_name(augment),
        "temperature": float(temperature),
        "alpha": float(alpha),
        "epochs": int(epochs),
        "features": [list(p) for p in pairs],
        "teacher_macs": macs_t,
        "student_macs": macs_s,
        "macs_ratio": macs_s / macs_t if macs_t else None,
        "train_seconds": round(seconds, 3),
        "labelled_samples": len(scored),
        "unlabeled_samples": len(train) - len(scored),
    }
    if val is not None:
        details["teacher_accuracy"] = acc_t
        details["student_accuracy"] = accuracy(student, val)
    return CompressResult(student, details, seconds)


def _unlabelled(data: Any, train: Any) -> Any:
    """``data`` as a Dataset whose inputs match ``train``'s names and sample shapes."""
    from edgeloop.data import Dataset

    ds = data if isinstance(data, Dataset) else as_dataset((data, None), "unlabelled data")
    if len(ds) == 0:
        raise InputError(f"unlabelled data {ds.name!r} is empty")
    want, got = train.shapes(), ds.shapes()
    if list(want.values()) != list(got.values()):
        raise InputError(
            f"unlabelled data {ds.name!r} has samples shaped {got}; the distillation data's "
            f"are {want}"
        )
    return ds


def load_unlabelled(spec: str | Path, seed: int = 0) -> Any:
    """Unlabelled inputs named on a command line or in a recipe: a built-in dataset's ``train``
    split, or a user's ``.npz``/``.csv``/image folder, whole, labels optional (and ignored)."""
    from edgeloop.data import BUILTIN, load_dataset

    if isinstance(spec, str) and spec in BUILTIN:
        return load_dataset(spec, "train", seed=seed)
    return load_dataset(Path(spec), "all", seed=seed, require_labels=False)


def _join(train: Any, extra: Any) -> Any:
    """``train`` followed by ``extra``, whose labels become -1 (unknown)."""
    from edgeloop.data import Dataset

    a, b = train.inputs, extra.inputs
    names = list(a)
    x: Any = {
        k: np.concatenate([a[k], bv.astype(a[k].dtype)])
        for k, bv in zip(names, b.values(), strict=True)
    }
    if not isinstance(train.x, dict):
        x = x[names[0]]
    y = np.concatenate([train.y, np.full(len(extra), -1, dtype=np.int64)])
    return Dataset(
        name=f"{train.name}+unlabelled",
        task=train.task,
        x=x,
        y=y,
        classes=train.classes,
        split=train.split,
        input_names=train.input_names,
    )


def student_kwargs(arch: str, data: Any, teacher_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Constructor kwargs for a zoo student: fitted to the data when there is some, else the
    teacher's kwargs that the student's constructor also takes (classes, channels ...)."""
    from edgeloop.zoo import ARCHITECTURES, arch_info, kwargs_for

    info = arch_info(arch)
    if data is not None:
        return kwargs_for(arch, as_dataset(data))
    import inspect

    accepted = set(inspect.signature(ARCHITECTURES[info.name].builder).parameters)
    return {**info.defaults, **{k: v for k, v in teacher_kwargs.items() if k in accepted}}


def width_arg(arch: str, width: float) -> float | int:
    """``width`` as the architecture takes it: a multiplier (float) or a channel count (int)."""
    import inspect

    from edgeloop.zoo import ARCHITECTURES, arch_info

    param_ = inspect.signature(ARCHITECTURES[arch_info(arch).name].builder).parameters.get("width")
    if param_ is None:
        raise InputError(f"architecture {arch!r} has no width option")
    if isinstance(param_.default, int) and not isinstance(param_.default, bool):
        if not float(width).is_integer() or width < 1:
            raise InputError(f"{arch!r} takes width as a channel count; got {width}")
        return int(width)
    return float(width)


@register_pass("distill", "torch")
def distill_pass(
    state: ModelState, params: Mapping[str, Any], ctx: PassContext
) -> tuple[ModelState, StepResult]:
    """Recipe pass ``distill``: the state's model teaches a zoo ``student`` architecture.

    Params: student (architecture name), student_kwargs (e.g. ``{"width": 0.25}``),
    temperature, alpha, epochs, lr, batch_size, features (list of [student, teacher] names),
    unlabeled (a data file or built-in dataset whose inputs teach without their labels),
    augment (e.g. ``shift``; the teacher sees the same augmented batch).
    """
    from edgeloop.zoo import build_model

    if state.torch_model is None:
        raise PassError("distill needs a PyTorch teacher model; the state holds none")
    arch = param(params, "student", None)
    if not arch:
        raise InputError("distill needs a 'student' architecture name in its params")
    train, val = train_val(_with_limit(ctx, params))
    extra = param(params, "unlabeled", None)
    kwargs = {
        **student_kwargs(str(arch), train, state.arch_kwargs),
        **param(params, "student_kwargs", {}),
    }
    torch.manual_seed(ctx.seed)
    student = build_model(str(arch), **kwargs)
    res = distill(
        state.torch_model,
        student,
        train,
        val,
        temperature=float(param(params, "temperature", 2.0)),
        alpha=float(param(params, "alpha", 0.5)),
        epochs=int(param(params, "epochs", 5)),
        lr=float(param(params, "lr", 3e-3)),
        batch_size=int(param(params, "batch_size", 64)),
        features=[tuple(p) for p in param(params, "features", [])],
        progress=ctx.progress,
        seed=ctx.seed,
        augment=param(params, "augment", None),
        unlabeled=None if extra is None else load_unlabelled(str(extra), ctx.seed),
    )
    new = dataclasses.replace(
        state,
        torch_model=res.model,
        arch=str(arch),
        notes=[*state.notes, f"distilled into {arch}"],
        arch_kwargs=kwargs,
        meta={**state.meta, "arch": str(arch), "arch_kwargs": kwargs},
    )
    return new, StepResult("distill", dict(params), res.details, res.warnings, res.seconds)
