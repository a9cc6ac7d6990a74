"""Checkpoints of compressed zoo models.

A distilled, sparsified or binarized zoo model keeps its architecture, so it is an ordinary zoo
checkpoint. A pruned one does not: its layers are narrower than ``arch_kwargs`` builds. Its
checkpoint is still a zoo checkpoint (read with ``weights_only=True``) with the torch-pruning
history (which channels of which layer were removed) under ``extra['pruning_history']``;
:func:`load_model` builds the architecture, replays the history with torch-pruning's
dependency graph, and then loads the weights.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch_pruning as tp
from torch import nn

from edgeloop.errors import ModelFormatError

__all__ = ["example_from_spec", "load_model", "save_model"]

PRUNING_KEY = "pruning_history"


def example_from_spec(spec: Sequence[Mapping[str, Any]]) -> torch.Tensor | dict[str, torch.Tensor]:
    """A batch of one zero sample per input of a checkpoint's ``input_spec``."""
    tensors = {
        s["name"]: torch.zeros((1, *s["shape"]), dtype=getattr(torch, str(s["dtype"])))
        for s in spec
    }
    if "attention_mask" in tensors:
        tensors["attention_mask"] = torch.ones_like(tensors["attention_mask"])
    return tensors if len(tensors) > 1 else next(iter(tensors.values()))


def replay_pruning(model: nn.Module, history: Sequence[Any], example: Any) -> None:
    """Remove the channels ``history`` names from a freshly built ``model`` (in place)."""
    inputs = dict(example) if isinstance(example, dict) else example
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        graph = tp.DependencyGraph().build_dependency(model, example_inputs=inputs)
        graph.load_pruning_history(
            [(str(n), bool(o), [int(i) for i in idx]) for n, o, idx in history]
        )


def _plain_history(history: Sequence[Any]) -> list[list[Any]]:
    return [[str(n), bool(o), [int(i) for i in idx]] for n, o, idx in history]


def save_model(
    model: nn.Module,
    path: str | Path,
    meta: Mapping[str, Any],
    *,
    arch: str | None = None,
    arch_kwargs: Mapping[str, Any] | None = None,
    pruning_history: Sequence[Any] | None = None,
    metrics: Mapping[str, float] | None = None,
    note: str | None = None,
) -> Path:
    """Write ``model`` as a zoo checkpoint, keeping ``meta``'s input spec, task and classes."""
    from edgeloop.zoo import save_checkpoint

    extra = dict(meta.get("extra") or {})
    if pruning_history is not None:
        extra[PRUNING_KEY] = _plain_history(extra.get(PRUNING_KEY, [])) + _plain_history(
            pruning_history
        )
    if note:
        extra["compression"] = [*extra.get("compression", []), note]
    return save_checkpoint(
        model,
        path,
        arch=str(arch or meta["arch"]),
        arch_kwargs=dict(arch_kwargs if arch_kwargs is not None else meta["arch_kwargs"]),
        input_spec=meta["input_spec"],
        task=str(meta.get("task", "classification")),
        classes=list(meta.get("classes") or []),
        dataset=dict(meta.get("dataset") or {}),
        metrics={**dict(meta.get("metrics") or {}), **dict(metrics or {})},
        extra=extra,
    )


def load_model(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """A zoo checkpoint, pruned or not: ``(module in eval mode, metadata without weights)``."""
    from edgeloop.zoo import build_model, check_checkpoint, read_torch_file

    where = repr(str(path))
    ckpt = check_checkpoint(read_torch_file(path), where)
    history = (ckpt.get("extra") or {}).get(PRUNING_KEY)
    meta = {k: v for k, v in ckpt.items() if k != "state_dict"}
    model = build_model(ckpt["arch"], **ckpt["arch_kwargs"])
    if history:
        try:
            replay_pruning(model, history, example_from_spec(ckpt["input_spec"]))
        except Exception as e:  # a history from another architecture or version
            raise ModelFormatError(
                f"checkpoint {where}: cannot replay its pruning history on {ckpt['arch']!r}: {e}"
            ) from e
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as e:
        raise ModelFormatError(
            f"checkpoint {where}: weights do not fit {ckpt['arch']!r} "
            f"{'after replaying its pruning' if history else 'with ' + str(ckpt['arch_kwargs'])}: "
            f"{str(e).splitlines()[0]}"
        ) from e
    return model.eval(), meta
