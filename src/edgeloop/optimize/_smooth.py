"""SmoothQuant-style migration: move activation outliers into the MatMul weights before int8.

Transformers carry a few activation channels far larger than the rest (in all-MiniLM-L6-v2 the
[CLS] token's channels after LayerNorm and GELU reach 20-30 while the median channel stays near
1). One per-tensor int8 scale for such an activation spends its 256 steps on the outliers and
rounds every other channel to a handful of levels. For ``y = x @ W`` the identity
``x @ W = (x / s) @ (s * W)`` (``s`` one factor per input channel) lets a scale move that range
into the weights, which are quantized per output channel and tolerate it:

    s_j = max|x_j| ** alpha / max|W_j,:| ** (1 - alpha)

(Xiao et al., SmoothQuant, 2023). ``max|x_j|`` comes from one float run over the calibration
split. ``1 / s`` is folded into the LayerNormalization that produces ``x`` when that
LayerNorm feeds only the smoothed MatMuls (pre-LN blocks); otherwise (post-LN BERT, whose
LayerNorm output also feeds the residual sum, or a GELU output) a float ``Mul`` by ``1 / s`` is
inserted before them: one element-wise op, cheap next to the MatMul it makes quantizable.
MatMuls that read the same activation (query, key, value) share one ``s``. The float model
computes the same function (up to rounding); only the int8 model built from it changes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from edgeloop.errors import InputError
from edgeloop.optimize._model import load_onnx, save_onnx, uses_external_data
from edgeloop.optimize._passes import ModelState, PassContext, StepResult, register_pass

__all__ = ["SMOOTH_ALPHA", "SmoothResult", "channel_max", "smooth_model"]

SMOOTH_ALPHA = 0.8  # measured on all-MiniLM-L6-v2: 0.5 left min cosine at 0.988, 0.8 gave 0.998
MIN_OUTLIER_RATIO = 4.0  # smooth an activation only when its largest channel max is 4x the median


@dataclass
class SmoothResult:
    model: onnx.ModelProto
    details: dict[str, Any]


def _weighted_matmuls(model: onnx.ModelProto) -> dict[str, list[onnx.NodeProto]]:
    """Activation tensor -> the MatMuls that multiply it by a 2-D float initializer."""
    inits = {t.name: t for t in model.graph.initializer}
    groups: dict[str, list[onnx.NodeProto]] = {}
    for n in model.graph.node:
        if n.op_type != "MatMul" or n.domain not in ("", "ai.onnx") or len(n.input) != 2:
            continue
        w = inits.get(n.input[1])
        if w is None or n.input[0] in inits or len(w.dims) != 2:
            continue
        if w.data_type != onnx.TensorProto.FLOAT:
            continue
        groups.setdefault(n.input[0], []).append(n)
    return groups


def channel_max(
    model: onnx.ModelProto,
    tensors: list[str],
    feeds: Mapping[str, np.ndarray],
    *,
    batch: int = 16,
) -> dict[str, np.ndarray]:
    """max |x| per last-axis channel of each named tensor, over ``feeds`` (one float run)."""
    from edgeloop.runtime import Session

    aug = onnx.ModelProto()
    aug.CopyFrom(model)
    have = {o.name for o in aug.graph.output}
    for t in tensors:
        if t not in have:
            aug.graph.output.append(helper.make_tensor_value_info(t, onnx.TensorProto.FLOAT, None))
    sess = Session(aug.SerializeToString(), threads=1, providers=["CPUExecutionProvider"])
    names = list(tensors)
    wanted = set(tensors)
    n = len(next(iter(feeds.values())))
    out: dict[str, np.ndarray] = {}
    for start in range(0, n, batch):
        chunk = {k: np.ascontiguousarray(v[start : start + batch]) for k, v in feeds.items()}
        for name, arr in sess.run_unchecked(chunk, names).items():
            if name not in wanted or arr.ndim == 0:
                continue
            m = np.abs(arr.astype(np.float32)).reshape(-1, arr.shape[-1]).max(0)
            out[name] = m if name not in out else np.maximum(out[name], m)
    return out


def smooth_model(
    model: onnx.ModelProto,
    feeds: Mapping[str, np.ndarray],
    *,
    alpha: float = SMOOTH_ALPHA,
    min_ratio: float = MIN_OUTLIER_RATIO,
) -> SmoothResult:
    """A copy of ``model`` with outlier channels migrated into MatMul weights (see above)."""
    if not 0.0 <= alpha <= 1.0:
        raise InputError(f"smooth alpha must be between 0 and 1; got {alpha}")
    if min_ratio < 1.0:
        raise InputError(f"smooth min_ratio must be at least 1; got {min_ratio}")
    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph
    groups = _weighted_matmuls(out)
    details: dict[str, Any] = {
        "alpha": alpha,
        "min_outlier_ratio": min_ratio,
        "activations_seen": len(groups),
        "smoothed": [],
    }
    if not groups:
        return SmoothResult(out, details)
    stats = channel_max(model, sorted(groups), feeds)
    inits = {t.name: t for t in g.initializer}
    producers = {o: n for n in g.node for o in n.output}
    consumers: dict[str, int] = {}
    for n in g.node:
        for i in n.input:
            consumers[i] = consumers.get(i, 0) + 1
    graph_outputs = {o.name for o in g.output}
    inserts: dict[str, onnx.NodeProto] = {}  # name of the first consumer -> Mul to put before
    for x, nodes in groups.items():
        mx = stats.get(x)
        weights = [numpy_helper.to_array(inits[n.input[1]]) for n in nodes]
        if mx is None or any(w.shape[0] != mx.shape[0] for w in weights):
            continue
        median = float(np.median(mx))
        ratio = float(mx.max() / median) if median > 0 else float("inf")
        if ratio < min_ratio:
            continue
        wmax = np.max([np.abs(w).max(axis=1) for w in weights], axis=0)
        ok = (mx > 0) & (wmax > 0)
        s = np.ones_like(mx, dtype=np.float64)
        s[ok] = mx[ok].astype(np.float64) ** alpha / wmax[ok].astype(np.float64) ** (1 - alpha)
        s = np.clip(s, 1e-4, 1e4)
        for n, w in zip(nodes, weights, strict=True):
            name = f"{n.input[1]}_smooth_{len(g.initializer)}"
            g.initializer.append(numpy_helper.from_array((w * s[:, None]).astype(np.float32), name))
            n.input[1] = name
        ln = producers.get(x)
        folded = (
            ln is not None
            and ln.op_type == "LayerNormalization"
            and consumers.get(x, 0) == len(nodes)
            and x not in graph_outputs
            and len(ln.input) >= 3
            and all(i in inits for i in ln.input[1:3])
        )
        if folded and ln is not None:
            for k in (1, 2):
                p = numpy_helper.to_array(inits[ln.input[k]]).astype(np.float64)
                name = f"{ln.input[k]}_smooth_{len(g.initializer)}"
                g.initializer.append(numpy_helper.from_array((p / s).astype(np.float32), name))
                ln.input[k] = name
        else:
            inv = numpy_helper.from_array((1.0 / s).astype(np.float32), f"{x}_smooth_inv")
            g.initializer.append(inv)
            y = f"{x}_smoothed"
            first = nodes[0]
            for n in nodes:
                n.input[0] = y
            inserts[_key(first)] = helper.make_node(
                "Mul", [x, inv.name], [y], name=f"{first.name or x}_smooth"
            )
        details["smoothed"].append(
            {
                "activation": x,
                "matmuls": [n.name for n in nodes],
                "outlier_ratio": round(ratio, 2),
                "how": "folded into LayerNorm" if folded else "Mul inserted",
            }
        )
    if inserts:
        ordered: list[onnx.NodeProto] = []
        for n in g.node:
            mul = inserts.get(_key(n))
            if mul is not None:
                ordered.append(mul)
            ordered.append(n)
        del g.node[:]
        g.node.extend(ordered)
    _drop_unused(g)
    return SmoothResult(out, details)


def _key(node: onnx.NodeProto) -> str:
    """A key for a node that survives rewiring its inputs: its outputs."""
    return "\x00".join(node.output)


def _drop_unused(g: onnx.GraphProto) -> None:
    used = {i for n in g.node for i in n.input} | {o.name for o in g.output}
    keep = [t for t in g.initializer if t.name in used]
    if len(keep) != len(g.initializer):
        del g.initializer[:]
        g.initializer.extend(keep)


def smooth_file(
    src: Path, dest: Path, feeds: Mapping[str, np.ndarray], params: Mapping[str, Any]
) -> dict[str, Any]:
    """:func:`smooth_model` from ``src`` to ``dest`` (external data kept as it was)."""
    alpha = params.get("smooth_alpha", params.get("alpha", SMOOTH_ALPHA))
    ratio = params.get("min_outlier_ratio", MIN_OUTLIER_RATIO)
    try:
        alpha_f, ratio_f = float(alpha), float(ratio)
    except (TypeError, ValueError):
        raise InputError(
            f"smooth alpha and min_outlier_ratio must be numbers; got {alpha!r}, {ratio!r}"
        ) from None
    result = smooth_model(load_onnx(src), feeds, alpha=alpha_f, min_ratio=ratio_f)
    save_onnx(result.model, dest, external=uses_external_data(src))
    return result.details


def calibration_feeds(ctx: PassContext, limit: int = 128) -> dict[str, np.ndarray] | None:
    """The calibration split (never the held-out evaluation part), first ``limit`` samples."""
    md = ctx.options.get("model_data")
    if md is None:
        return None
    source = md.calib or md.inputs
    return {k: v[:limit] for k, v in source.items()}


@register_pass("smooth", "onnx")
def smooth(
    state: ModelState, params: Mapping[str, Any], ctx: PassContext
) -> tuple[ModelState, StepResult]:
    """Migrate activation outliers into MatMul weights (SmoothQuant); needs calibration data."""
    if state.onnx_path is None:
        raise InputError("pass 'smooth' needs an ONNX model")
    feeds = calibration_feeds(ctx, int(params.get("samples", 128)))
    if feeds is None:
        return state, StepResult(
            "smooth",
            dict(params),
            {"smoothed": []},
            ["smooth needs calibration data (--data); the model goes on unchanged"],
        )
    dest = ctx.workdir / "smooth.onnx"
    details = smooth_file(state.onnx_path, dest, feeds, params)
    return ModelState("onnx", onnx_path=dest, notes=list(state.notes)), StepResult(
        "smooth", dict(params), details, []
    )


def smooth_before_quantize(
    src: Path, params: Mapping[str, Any], ctx: PassContext
) -> tuple[Path, dict[str, Any] | None]:
    """The ``smooth`` option of the int8 passes: ``auto`` (default) smooths when calibration
    data is there and some MatMul input has outlier channels, ``true`` insists on data,
    ``false`` never smooths. Returns the model to quantize and what was done (None: nothing)."""
    mode = params.get("smooth", "auto")
    if mode not in ("auto", True, False):
        raise InputError(f"smooth must be auto, true or false; got {mode!r}")
    if mode is False:
        return src, None
    feeds = calibration_feeds(ctx, int(params.get("smooth_samples", 128)))
    if feeds is None:
        if mode is True:
            raise InputError("smooth: true needs calibration data (--data)")
        return src, None
    dest = ctx.workdir / f"smoothed_{src.stem}.onnx"
    details = smooth_file(src, dest, feeds, params)
    return (dest if details["smoothed"] else src), details
