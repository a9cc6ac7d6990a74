"""Pre-processing before quantization, robust to models other toolchains export.

``fold_weight_constants``  move the tensors of ``Constant`` nodes into initializers: ORT's
                           quantizers only quantize initializer weights, and its symbolic shape
                           inference gives up on graphs whose weights are ``Constant`` nodes
``upgrade_opset``          lift a model below opset 13 with ONNX's version converter, so
                           per-channel ``DequantizeLinear`` (its ``axis`` needs 13) is valid
``run_pre_process``        ORT's ``quant_pre_process`` with every fallback, in order:
                           symbolic shape inference + graph optimisation; graph optimisation with
                           plain ONNX shape inference; symbolic shape inference alone; ONNX shape
                           inference alone. The first that holds is recorded.

Everything runs in a scratch working directory: ORT's symbolic shape inference saves
``sym_shape_infer_temp.onnx`` (and its ``.data``) into the cwd when it gives up.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import onnx

from edgeloop._io import scratch_cwd

__all__ = ["PER_CHANNEL_OPSET", "PRE_PROCESS_MODES", "opset_of", "upgrade_opset"]

PER_CHANNEL_OPSET = 13

# (description, quant_pre_process keyword arguments), in the order they are tried
PRE_PROCESS_MODES: tuple[tuple[str, dict[str, bool]], ...] = (
    ("symbolic shape inference + graph optimisation", {}),
    ("graph optimisation + ONNX shape inference", {"skip_symbolic_shape": True}),
    ("symbolic shape inference, no graph optimisation", {"skip_optimization": True}),
    (
        "ONNX shape inference only",
        {"skip_optimization": True, "skip_symbolic_shape": True},
    ),
)


def opset_of(model: onnx.ModelProto) -> int:
    return next((int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def fold_weight_constants(model: onnx.ModelProto) -> int:
    """Turn the main graph's ``Constant`` nodes holding a tensor into initializers, in place.

    Returns how many moved. Only the ``value`` form (a tensor) moves; the scalar/list forms
    (``value_float`` ...) are left, as are Constants inside subgraphs (their scope differs).
    """
    g = model.graph
    taken = {t.name for t in g.initializer}
    keep: list[onnx.NodeProto] = []
    moved: list[onnx.TensorProto] = []
    for node in g.node:
        value = next(
            (a.t for a in node.attribute if a.name == "value" and a.type == a.TENSOR), None
        )
        if (
            node.op_type == "Constant"
            and node.domain in ("", "ai.onnx")
            and value is not None
            and len(node.attribute) == 1
            and node.output[0] not in taken
        ):
            t = onnx.TensorProto()
            t.CopyFrom(value)
            t.name = node.output[0]
            moved.append(t)
            taken.add(t.name)
        else:
            keep.append(node)
    if moved:
        del g.node[:]
        g.node.extend(keep)
        g.initializer.extend(moved)
    return len(moved)


def upgrade_opset(
    model: onnx.ModelProto, target: int = PER_CHANNEL_OPSET
) -> tuple[onnx.ModelProto | None, str]:
    """The model converted to ``target`` (and checked), or None and why it could not be."""
    from onnx import version_converter

    try:
        out = version_converter.convert_version(model, target)
        onnx.checker.check_model(out)
        onnx.shape_inference.infer_shapes(out, check_type=True, strict_mode=True)
    except Exception as e:  # the converter lacks adapters for some ops; any failure is a "no"
        return None, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    return out, ""


def run_pre_process(
    src: Path, dest: Path, *, external: bool, allow_optimization: bool = True
) -> tuple[str | None, list[str]]:
    """``quant_pre_process`` with the fallbacks above; (the mode that held or None, failures)."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    failures: list[str] = []
    src, dest = src.resolve(), dest.resolve()  # the cwd changes below
    for label, kw in PRE_PROCESS_MODES:
        if not allow_optimization and not kw.get("skip_optimization"):
            continue
        kwargs: dict[str, Any] = dict(kw)
        try:
            with scratch_cwd():
                quant_pre_process(
                    str(src),
                    str(dest),
                    save_as_external_data=external,
                    all_tensors_to_one_file=True,
                    external_data_location=dest.name + ".data" if external else None,
                    **kwargs,
                )
        except Exception as e:  # symbolic shape inference and the optimiser reject some graphs
            msg = str(e).splitlines()[0] if str(e) else ""
            failures.append(f"{label}: {type(e).__name__}: {msg}"[:300])
            continue
        return label, failures
    return None, failures
