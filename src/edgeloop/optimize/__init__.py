"""Make a model smaller and faster with a measured, bounded loss of quality.

``optimize(model, recipe, data, out_dir=...)`` runs a :class:`~edgeloop.artifacts.Recipe` (an
ordered list of passes: ONNX passes such as ``quantize``, ``quantize_dynamic``, ``int4``,
``fp16``, ``fuse``, and PyTorch passes such as ``prune``) and reports every step.

Note: ``edgeloop.optimize`` (the attribute of the ``edgeloop`` package) is this function, so
``from edgeloop import optimize`` and ``edgeloop.optimize(...)`` both call it; the package's
other names come from ``from edgeloop.optimize import ...``.
"""

from __future__ import annotations

from edgeloop.optimize._data import ModelData, StreamingReader, load_model_data, match_inputs
from edgeloop.optimize._measure import Budget, Evaluator, Quality
from edgeloop.optimize._passes import (
    PASS_MODULES,
    ModelState,
    Pass,
    PassContext,
    StepResult,
    get_pass,
    register_pass,
    registered_passes,
)
from edgeloop.optimize._pipeline import optimize
from edgeloop.optimize._preflight import preflight, unfused_qdq
from edgeloop.optimize._recipes import (
    add_preset_dir,
    list_recipes,
    load_recipe,
    parse_recipe,
    register_preset,
)

# PyTorch compression (import torch on first use, so an ONNX-only recipe never does)
_TORCH_API: dict[str, str] = {
    "prune": "edgeloop.optimize._prune",
    "sparsify": "edgeloop.optimize._sparsity",
    "distill": "edgeloop.optimize._distill",
    "qat": "edgeloop.optimize._qat",
    "export_qdq": "edgeloop.optimize._qat",
    "binarize": "edgeloop.optimize._binary",
    "save_binary": "edgeloop.optimize._binary",
    "load_binary": "edgeloop.optimize._binary",
    "load_model": "edgeloop.optimize._torch_io",
    "save_model": "edgeloop.optimize._torch_io",
}


def __getattr__(name: str) -> object:
    module = _TORCH_API.get(name)
    if module is None:
        raise AttributeError(f"module 'edgeloop.optimize' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    *sorted(_TORCH_API),
    "PASS_MODULES",
    "Budget",
    "Evaluator",
    "ModelData",
    "ModelState",
    "Pass",
    "PassContext",
    "Quality",
    "StepResult",
    "StreamingReader",
    "add_preset_dir",
    "get_pass",
    "list_recipes",
    "load_model_data",
    "load_recipe",
    "match_inputs",
    "optimize",
    "parse_recipe",
    "preflight",
    "register_pass",
    "register_preset",
    "registered_passes",
    "unfused_qdq",
]
