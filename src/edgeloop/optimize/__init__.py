"""Make a model smaller and faster with a measured, bounded loss of quality.

``optimize(model, recipe, data, out_dir=...)`` runs a :class:`~edgeloop.artifacts.Recipe` (an
ordered list of passes: ONNX passes such as ``quantize``, ``quantize_dynamic``, ``int4``,
``fp16``, ``fuse``, and PyTorch passes such as ``prune``) and reports every step.

Note: ``edgeloop.optimize`` (the attribute of the ``edgeloop`` package) is this function, so
``from edgeloop import optimize`` and ``edgeloop.optimize(...)`` both call it; the package's
other names come from ``from edgeloop.optimize import ...``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edgeloop.optimize._data import ModelData, StreamingReader, load_model_data, match_inputs
from edgeloop.optimize._embedding import EMBEDDING_OUTPUT, add_embedding_output
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

if TYPE_CHECKING:  # the lazy names below, typed for mypy without importing torch at run time
    from edgeloop.optimize._binary import binarize as binarize
    from edgeloop.optimize._binary import fp32_bytes as fp32_bytes
    from edgeloop.optimize._binary import load_binary as load_binary
    from edgeloop.optimize._binary import save_binary as save_binary
    from edgeloop.optimize._distill import distill as distill
    from edgeloop.optimize._distill import load_unlabelled as load_unlabelled
    from edgeloop.optimize._distill import student_kwargs as student_kwargs
    from edgeloop.optimize._distill import width_arg as width_arg
    from edgeloop.optimize._prune import prune as prune
    from edgeloop.optimize._qat import export_qdq as export_qdq
    from edgeloop.optimize._qat import qat as qat
    from edgeloop.optimize._sparsity import sparsify as sparsify
    from edgeloop.optimize._torch_common import batch_of as batch_of
    from edgeloop.optimize._torch_common import check_ratio as check_ratio
    from edgeloop.optimize._torch_common import model_metric as model_metric
    from edgeloop.optimize._torch_io import load_model as load_model
    from edgeloop.optimize._torch_io import save_model as save_model

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
    "fp32_bytes": "edgeloop.optimize._binary",
    "load_unlabelled": "edgeloop.optimize._distill",
    "student_kwargs": "edgeloop.optimize._distill",
    "width_arg": "edgeloop.optimize._distill",
    "batch_of": "edgeloop.optimize._torch_common",
    "check_ratio": "edgeloop.optimize._torch_common",
    "model_metric": "edgeloop.optimize._torch_common",
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
    "EMBEDDING_OUTPUT",
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
    "add_embedding_output",
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
