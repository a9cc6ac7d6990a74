"""The ``fuse`` pass: ONNX Runtime graph optimisation saved offline, and ORT-format output.

ONNX Runtime optimises a graph every time it loads it. Doing it once, offline, saves that start-up
time on the device and shows what changed. Levels: ``basic`` (constant folding, redundant node
removal, Conv+BatchNorm/Add/Mul folding), ``extended`` (operator fusions: Gelu, LayerNorm,
attention, MatMul+Add, Conv+activation ...), ``all`` (adds layout changes such as NCHWc that tie
the file to the CPU it was made on: not portable, so it warns). The ``.ort`` copy is what minimal
ONNX Runtime builds load.

ORT does not say which rewrites it applied, so the pass infers them from the node counts before
and after (e.g. BatchNormalization 10 -> 0: "Conv+BatchNormalization folded (10)").
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edgeloop.errors import InputError, ModelFormatError, PassError
from edgeloop.optimize._model import load_onnx, uses_external_data
from edgeloop.optimize._passes import ModelState, PassContext, StepResult, register_pass
from edgeloop.runtime import save_optimized

__all__ = ["fusions_applied", "op_counts"]

LEVELS = ("basic", "extended", "all")

# fused op -> what it replaces, to name the fusions from the counts
_FUSED = {
    "FusedConv": "Conv+activation",
    "FusedMatMul": "MatMul+Transpose/Scale",
    "FusedGemm": "Gemm+activation",
    "Gelu": "Gelu (Erf pattern)",
    "FastGelu": "Gelu (tanh pattern)",
    "BiasGelu": "Add+Gelu",
    "LayerNormalization": "LayerNormalization (ReduceMean pattern)",
    "SkipLayerNormalization": "Add+LayerNormalization",
    "SimplifiedLayerNormalization": "RMSNorm",
    "Attention": "multi-head attention",
    "MultiHeadAttention": "multi-head attention",
    "QLinearConv": "QDQ -> QLinearConv",
    "QLinearMatMul": "QDQ -> QLinearMatMul",
    "MatMulIntegerToFloat": "MatMulInteger+scale",
    "QuickGelu": "x*sigmoid(1.702x)",
}
_FOLDED = {
    "BatchNormalization": "Conv+BatchNormalization folded",
    "Identity": "Identity removed",
    "Dropout": "Dropout removed",
    "Constant": "constants folded into initializers",
    "Shape": "shape computations folded",
    "Cast": "redundant Cast removed",
    "Unsqueeze": "Unsqueeze folded",
    "Reshape": "Reshape folded",
    "Add": "Add folded into Conv/MatMul bias",
    "Mul": "Mul folded into Conv weights",
}


def op_counts(path: str | Path) -> dict[str, int]:
    model = load_onnx(path, with_weights=False)
    return dict(Counter(n.op_type for n in model.graph.node).most_common())


def fusions_applied(before: Mapping[str, int], after: Mapping[str, int]) -> list[str]:
    out: list[str] = []
    for op, what in _FUSED.items():
        gained = after.get(op, 0) - before.get(op, 0)
        if gained > 0:
            out.append(f"{what} ({gained})")
    for op, what in _FOLDED.items():
        lost = before.get(op, 0) - after.get(op, 0)
        if lost > 0:
            out.append(f"{what} ({lost})")
    return out


def _optimize(src: Path, dest: Path, level: str, ort_format: bool, external: bool) -> None:
    try:
        save_optimized(
            src,
            dest,
            graph_optimization=level,
            ort_format=ort_format,
            external_data_min_bytes=1024 if external else None,
        )
    except ModelFormatError as e:
        raise PassError(str(e)) from e


@register_pass("fuse", "onnx")
def fuse(
    state: ModelState, params: Mapping[str, Any], ctx: PassContext
) -> tuple[ModelState, StepResult]:
    if state.onnx_path is None:
        raise PassError("pass 'fuse' needs an ONNX model")
    src = state.onnx_path
    level = str(params.get("level", "extended")).lower()
    if level not in LEVELS:
        raise InputError(f"fuse level must be one of {sorted(LEVELS)}; got {level!r}")
    external = uses_external_data(src)
    dest = ctx.workdir / "fused.onnx"
    _optimize(src, dest, level, ort_format=False, external=external)
    before, after = op_counts(src), op_counts(dest)
    details: dict[str, Any] = {
        "level": level,
        "nodes_before": sum(before.values()),
        "nodes_after": sum(after.values()),
        "ops_before": before,
        "ops_after": after,
        "fusions": fusions_applied(before, after),
    }
    warnings: list[str] = []
    if level == "all":
        warnings.append(
            "level 'all' may insert CPU-specific layouts (NCHWc): the file suits this "
            "CPU; use 'extended' for a portable model"
        )
    if params.get("ort_format", False):
        ort_path = ctx.workdir / "fused.ort"
        if external:
            warnings.append("ORT format skipped: the model keeps its weights in external data")
        else:
            _optimize(src, ort_path, level, ort_format=True, external=False)
            details["ort_path"] = str(ort_path)
    return ModelState("onnx", onnx_path=dest, notes=list(state.notes)), StepResult(
        "fuse", dict(params), details, warnings
    )
