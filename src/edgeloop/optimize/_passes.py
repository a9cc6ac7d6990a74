"""The pass registry that recipes are made of.

A recipe is an ordered list of passes. Each pass takes a :class:`ModelState` and returns a new
one. A state holds either a PyTorch module (passes that change the network: prune, distill,
qat, binarize) or an ONNX file (passes that change the graph: quantize, fuse, fp16). The
pipeline exports a torch state to ONNX the first time an ONNX pass needs it, so torch passes
and ONNX passes compose in one recipe (e.g. ``prune -> int8``).

Passes register themselves with :func:`register_pass`; torch passes live in modules that are
imported only when a recipe uses them, so an ONNX-only recipe never imports torch.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from edgeloop.artifacts import LineageRef
from edgeloop.errors import UnknownNameError

__all__ = [
    "PASS_MODULES",
    "ModelState",
    "Pass",
    "PassContext",
    "StepResult",
    "get_pass",
    "register_pass",
    "registered_passes",
]

StateKind = Literal["torch", "onnx"]


@dataclass
class ModelState:
    """The model between passes: a torch module or an ONNX file on disk."""

    kind: StateKind
    onnx_path: Path | None = None
    torch_model: Any = None  # torch.nn.Module when kind == "torch"
    # architecture name and constructor kwargs when the torch model comes from the zoo
    arch: str | None = None
    arch_kwargs: dict[str, Any] = field(default_factory=dict)
    # input shape (without batch) and dtype used to export a torch state
    input_shape: tuple[int, ...] | None = None
    notes: list[str] = field(default_factory=list)
    # checkpoint metadata (input_spec, task, classes, dataset ...) carried to the ONNX export
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class StepResult:
    """What one pass reports; the pipeline adds size, MACs, latency and the metric."""

    name: str
    params: dict[str, Any]
    details: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class PassContext:
    """Everything a pass may need besides the model. Passes do not do I/O outside ``workdir``."""

    workdir: Path
    # a data source (edgeloop.data.Dataset or a calibration reader factory); None if not given
    data: Any = None
    # labelled metric name ("accuracy", "f1", "auc") or None for unlabelled models
    metric: str | None = None
    lineage: list[LineageRef] = field(default_factory=list)
    progress: Callable[[str, float], None] | None = None  # (message, fraction done)
    options: dict[str, Any] = field(default_factory=dict)
    seed: int = 0


class Pass(Protocol):
    name: str
    input_kind: StateKind  # what state the pass needs; the pipeline converts torch -> onnx

    def __call__(
        self, state: ModelState, params: Mapping[str, Any], ctx: PassContext
    ) -> tuple[ModelState, StepResult]: ...


_REGISTRY: dict[str, Pass] = {}

# pass name -> module that registers it (imported on first use, so torch loads only when needed)
PASS_MODULES: dict[str, str] = {
    "preprocess": "edgeloop.optimize._quantize",
    "quantize": "edgeloop.optimize._quantize",
    "quantize_dynamic": "edgeloop.optimize._lowbit",
    "int4": "edgeloop.optimize._lowbit",
    "fp16": "edgeloop.optimize._lowbit",
    "smooth": "edgeloop.optimize._smooth",
    "fuse": "edgeloop.optimize._fuse",
    "prune": "edgeloop.optimize._prune",
    "sparsify": "edgeloop.optimize._sparsity",
    "distill": "edgeloop.optimize._distill",
    "qat": "edgeloop.optimize._qat",
    "binarize": "edgeloop.optimize._binary",
}


def register_pass(
    name: str, input_kind: StateKind, module: str | None = None
) -> Callable[..., Any]:
    """Decorator: ``@register_pass("quantize", "onnx")`` over ``fn(state, params, ctx)``."""

    def deco(fn: Callable[..., tuple[ModelState, StepResult]]) -> Callable[..., Any]:
        fn.name = name  # type: ignore[attr-defined]
        fn.input_kind = input_kind  # type: ignore[attr-defined]
        _REGISTRY[name] = fn  # type: ignore[assignment]
        return fn

    return deco


def get_pass(name: str) -> Pass:
    if name not in _REGISTRY and name in PASS_MODULES:
        importlib.import_module(PASS_MODULES[name])
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(set(_REGISTRY) | set(PASS_MODULES)))
        raise UnknownNameError(f"unknown pass {name!r}; expected one of: {known}") from None


def registered_passes() -> list[str]:
    return sorted(set(_REGISTRY) | set(PASS_MODULES))
