"""ONNX passes that change precision, wrapping ONNX Runtime's quantization tools.

``preprocess``        shape inference and graph pre-optimisation (``quant_pre_process``)
``quantize``          static int8, QDQ (or QOperator), per-channel weights, calibrated
                      (MinMax, Entropy, Percentile) through a streaming data reader
``quantize_dynamic``  dynamic int8 (weights int8, activations quantized at run time)
``int4``              weight-only block-wise int4 for MatMuls (MatMulNBits)
``fp16``              float16 weights and activations, float32 inputs and outputs

The three int passes take a budget from the pipeline (``ctx.options["budget"]``): when the
fully quantized model misses it, :mod:`edgeloop.optimize._mixed` keeps the most sensitive
nodes in float until it holds.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from edgeloop.errors import DataError, InputError, PassError
from edgeloop.optimize._model import (
    input_specs,
    load_onnx,
    name_nodes,
    save_onnx,
    uses_external_data,
)
from edgeloop.optimize._passes import ModelState, PassContext, StepResult, register_pass
from edgeloop.optimize._preflight import local_profile, preflight, unfused_qdq

__all__ = ["MAC_OP_TYPES", "candidates", "node_groups"]

MAC_OP_TYPES = ("Conv", "ConvTranspose", "MatMul", "Gemm")


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """ORT's quantizer logs advice at WARNING through the root logger; keep it out of the CLI."""
    root = logging.getLogger()
    old = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(old)


def _out(state: ModelState, ctx: PassContext, name: str) -> Path:
    return ctx.workdir / f"{name}.onnx"


def _src(state: ModelState, name: str) -> Path:
    if state.onnx_path is None:
        raise PassError(f"pass {name!r} needs an ONNX model, got a {state.kind} state")
    return state.onnx_path


def _param(params: Mapping[str, Any], key: str, default: Any) -> Any:
    v = params.get(key, default)
    return default if v is None else v


def candidates(
    model: onnx.ModelProto, op_types: tuple[str, ...] = MAC_OP_TYPES
) -> list[tuple[str, int]]:
    """Nodes of the given op types with their constant weight bytes (largest work first)."""
    inits = {t.name: t for t in model.graph.initializer}
    out: list[tuple[str, int]] = []
    for n in model.graph.node:
        if n.op_type in op_types and n.name:
            w = sum(
                int(np.prod(inits[i].dims, dtype=np.int64)) * 4 for i in n.input[1:2] if i in inits
            )
            out.append((n.name, w))
    return out


def node_groups(
    model: onnx.ModelProto, exclude: set[str], op_types: set[str] | None = None
) -> dict[str, list[str]]:
    """Units for the budget search besides single weighted MAC nodes (static int8).

    Each quantizable op type that is not a MAC op is one group (``op:LayerNormalization``,
    ``op:Softmax``, ``op:Add`` for residual sums, ``op:Mul`` ...), and MatMuls of two
    activations (attention scores and context) are ``attention:MatMul``: the damage in
    transformers and some CNNs sits there, where a search over Conv/MatMul/Gemm weights alone
    never looks. Groups keep the probe count small (one build per group), so the search stays
    fast on a 100+-node encoder. ``op_types``: only the types being quantized (None: all).
    """
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    quantizable = (set(QDQRegistry) | set(QLinearOpsRegistry)) - set(MAC_OP_TYPES)
    data_movement = {"Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten", "Slice", "Split"}
    inits = {t.name for t in model.graph.initializer}
    groups: dict[str, list[str]] = {}
    for n in model.graph.node:
        if not n.name or n.name in exclude:
            continue
        if op_types is not None and n.op_type not in op_types:
            continue
        if n.op_type in quantizable and n.op_type not in data_movement:
            groups.setdefault(f"op:{n.op_type}", []).append(n.name)
        elif n.op_type == "MatMul" and n.input[1] not in inits and n.input[0] not in inits:
            groups.setdefault("attention:MatMul", []).append(n.name)
    return groups


def _mixed(
    src: Path,
    build: Callable[[list[str], Path], None],
    dest: Path,
    params: Mapping[str, Any],
    ctx: PassContext,
    op_types: tuple[str, ...],
    details: dict[str, Any],
    *,
    grouped: bool = False,
    quantized_types: set[str] | None = None,
) -> Path:
    """Build the quantized model; run the mixed-precision search when a budget is set.

    ``grouped`` (static int8): the search first weighs op-type groups and attention MatMuls
    (:func:`node_groups`), then, if the budget still misses, single weighted MAC nodes.
    """
    budget = ctx.options.get("budget")
    evaluator = ctx.options.get("evaluator")
    user_exclude = [str(x) for x in _param(params, "exclude", [])]
    model = load_onnx(src, with_weights=False)
    groups = node_groups(model, set(user_exclude), quantized_types) if grouped else {}

    def build_with(extra: list[str], out: Path) -> None:
        nodes = [n for x in extra for n in groups.get(x, [x])]
        build([*user_exclude, *nodes], out)

    if not budget or evaluator is None:
        build_with([], dest)
        return dest
    from edgeloop.optimize._mixed import search

    attention = set(groups.get("attention:MatMul", []))
    cands = [
        c for c in candidates(model, op_types) if c[0] not in user_exclude and c[0] not in attention
    ]
    max_float = params.get("max_float_nodes")
    if max_float is None:  # at least one node stays quantized, or it is the float model
        max_float = max(1, len(cands) - 1)
    kept_groups: list[str] = []
    if groups:
        first = search(
            [(g, 0) for g in groups],
            build_with,
            evaluator,
            budget,
            ctx.options["baseline"],
            ctx.workdir / f"groups_{dest.stem}",
            max_float=len(groups),
            progress=ctx.progress,
        )
        details["group_search"] = first.details()
        kept_groups = [str(k["node"]) for k in first.kept_float]
        if first.met or not cands:
            details["mixed_precision"] = first.details()
            details["mixed_precision"]["kept_float_nodes"] = [
                n for g in kept_groups for n in groups[g]
            ]
            if not first.met:
                details["budget_missed"] = budget.describe(first.shortfall)
            from edgeloop.optimize._model import copy_model

            copy_model(first.path, dest)
            return dest
    cands = _by_role(
        cands, lambda extra, out: build_with([*kept_groups, *extra], out), ctx, details
    )
    result = search(
        cands,
        lambda extra, out: build_with([*kept_groups, *extra], out),
        evaluator,
        budget,
        ctx.options["baseline"],
        ctx.workdir / f"mixed_{dest.stem}",
        max_float=int(max_float),
        progress=ctx.progress,
    )
    details["mixed_precision"] = result.details()
    details["mixed_precision"]["kept_float_nodes"] = [
        *(n for g in kept_groups for n in groups[g]),
        *(str(k["node"]) for k in result.kept_float),
    ]
    if not result.met:
        details["budget_missed"] = budget.describe(result.shortfall)
    from edgeloop.optimize._model import copy_model

    copy_model(result.path, dest)
    return dest


ROLE_SEARCH_MIN = 12  # candidates above which single-node probes are narrowed by role first
ROLE_SHARE = 0.25  # roles gaining at least this share of the best role's gain go on


def _by_role(
    cands: list[tuple[str, int]],
    build: Callable[[list[str], Path], None],
    ctx: PassContext,
    details: dict[str, Any],
    samples: int = 64,
) -> list[tuple[str, int]]:
    """The candidates worth a probe of their own, found with one probe per role.

    A role is a node name with its numbers taken out (``/encoder/layer.#/output/dense/MatMul``:
    the same MatMul in every layer). Each role is kept float as a whole once; only the nodes of
    roles whose float copy raises SQNR by at least a quarter of what the best role gains go on
    to single-node probes. On a 6-layer encoder that
    is 6 role probes and 6 node probes instead of 36 node probes.
    """
    import re

    roles: dict[str, list[str]] = {}
    for name, _ in cands:
        roles.setdefault(re.sub(r"\d+", "#", name), []).append(name)
    if len(cands) <= ROLE_SEARCH_MIN or not 3 <= len(roles) <= len(cands) // 2:
        return cands
    evaluator = ctx.options["evaluator"]
    work = ctx.workdir / "roles"
    work.mkdir(parents=True, exist_ok=True)
    probe = work / "role_probe.onnx"
    build([], probe)
    ref = evaluator.score(probe, latency=False, limit=samples).sqnr_mean_db or 0.0
    found: list[dict[str, Any]] = []
    for i, (role, nodes) in enumerate(roles.items()):
        if ctx.progress is not None:
            ctx.progress(f"role sensitivity {role}", i / len(roles))
        build(nodes, probe)
        gain = (evaluator.score(probe, latency=False, limit=samples).sqnr_mean_db or 0.0) - ref
        found.append({"role": role, "nodes": len(nodes), "sqnr_gain_db": round(gain, 3)})
    found.sort(key=lambda r: -float(r["sqnr_gain_db"]))
    details["role_search"] = found
    # every role of an encoder gains a little; those far behind the most sensitive one
    # (all-MiniLM-L6-v2: FFN output 3.9 dB, the next 0.8 dB) are not where the budget is won
    top = float(found[0]["sqnr_gain_db"]) if found else 0.0
    useful = {
        str(r["role"])
        for r in found
        if float(r["sqnr_gain_db"]) > 0 and float(r["sqnr_gain_db"]) >= ROLE_SHARE * top
    }
    if not useful:
        return cands
    return [c for c in cands if re.sub(r"\d+", "#", c[0]) in useful]


@register_pass("preprocess", "onnx")
def preprocess(
    state: ModelState, params: Mapping[str, Any], ctx: PassContext
) -> tuple[ModelState, StepResult]:
    """Weight Constants folded, opset lifted to 13, shape inference and graph optimisation.

    The fallbacks and their order are :data:`edgeloop.optimize._prepare.PRE_PROCESS_MODES`;
    ``details["mode"]`` names the one that held.
    """
    from edgeloop.optimize._prepare import (
        PER_CHANNEL_OPSET,
        fold_weight_constants,
        opset_of,
        run_pre_process,
        upgrade_opset,
    )

    src = _src(state, "preprocess")
    dest = _out(state, ctx, "preprocess")
    external = uses_external_data(src)
    warnings: list[str] = []
    model = load_onnx(src)
    folded = fold_weight_constants(model)
    opset = opset_of(model)
    details: dict[str, Any] = {"constants_folded": folded, "opset": opset}
    if opset < PER_CHANNEL_OPSET and bool(_param(params, "upgrade_opset", True)):
        upgraded, why = upgrade_opset(model)
        if upgraded is not None:
            model = upgraded
            details["opset_upgraded_to"] = PER_CHANNEL_OPSET
        else:
            warnings.append(
                f"opset {opset} could not be upgraded to {PER_CHANNEL_OPSET} ({why}); "
                "int8 weights will be per tensor (per-channel needs opset 13)"
            )
    staged = save_onnx(model, ctx.workdir / "staged.onnx", external=external)
    mode, failures = run_pre_process(
        staged,
        dest,
        external=external,
        allow_optimization=not bool(params.get("skip_optimization", False)),
    )
    details["mode"] = mode
    details["fallbacks_failed"] = failures
    if mode is None:
        warnings.append(
            "pre-processing failed in every mode, the model goes on as it was: "
            + "; ".join(failures)
        )
    elif failures:
        warnings.append(f"pre-processing fell back to {mode!r} ({failures[0]})")
    model = load_onnx(dest if mode is not None else staged)
    details["nodes_named"] = name_nodes(model)
    details["shape_inference"] = mode is not None
    save_onnx(model, dest, external=external)
    return (
        ModelState("onnx", onnx_path=dest, notes=list(state.notes)),
        StepResult("preprocess", dict(params), details, warnings),
    )


def _qtype(name: str, key: str) -> Any:
    from onnxruntime.quantization import QuantType

    table = {
        "int8": QuantType.QInt8,
        "qint8": QuantType.QInt8,
        "s8": QuantType.QInt8,
        "uint8": QuantType.QUInt8,
        "quint8": QuantType.QUInt8,
        "u8": QuantType.QUInt8,
    }
    try:
        return table[name.lower()]
    except KeyError:
        raise InputError(f"{key} must be one of int8, uint8 or auto; got {name!r}") from None


def _fixed_batch(model: onnx.ModelProto) -> int | None:
    for spec in input_specs(model):
        if spec.shape and spec.shape[0] is not None:
            return spec.shape[0]
    return None


@register_pass("quantize", "onnx")
def quantize(
    state: ModelState, params: Mapping[str, Any], ctx: PassContext
) -> tuple[ModelState, StepResult]:
    """Static int8 with calibration (QDQ by default)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, quantize_static

    src = _src(state, "quantize")
    data = ctx.options.get("model_data")
    if data is None:
        raise DataError(
            "static int8 needs calibration data: give a dataset name or a .npz (--data)"
        )
    from edgeloop.optimize._smooth import smooth_before_quantize

    src, smoothing = smooth_before_quantize(src, params, ctx)
    model = load_onnx(src, with_weights=False)
    if name_nodes(model):
        model = load_onnx(src)
        name_nodes(model)
        src = save_onnx(model, ctx.workdir / "named.onnx", external=uses_external_data(src))
    op_types, kept_float_ops = _op_types(model, params)
    profile = local_profile(ctx.options.get("target"))
    pre = preflight(model, profile)
    method_name = str(_param(params, "calibration", "minmax")).lower()
    methods = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }
    if method_name not in methods:
        raise InputError(f"calibration must be one of {sorted(methods)}; got {method_name!r}")
    act = str(_param(params, "activation_type", "auto"))
    act_t = _qtype(pre["activation_type"] if act == "auto" else act, "activation_type")
    weight_t = _qtype(str(_param(params, "weight_type", "int8")), "weight_type")
    rr = _param(params, "reduce_range", "auto")
    reduce_range = bool(pre["reduce_range"]) if rr == "auto" else bool(rr)
    fmt = str(_param(params, "format", "qdq")).lower()
    if fmt not in ("qdq", "qoperator"):
        raise InputError(f"format must be qdq or qoperator; got {fmt!r}")
    pc = _param(params, "per_channel", "auto")
    per_channel = True if pc == "auto" else bool(pc)
    samples = int(_param(params, "calib_samples", 256))
    batch = _fixed_batch(model) or int(_param(params, "calib_batch", 8))
    # strided calibration reduces each chunk of batches as it goes: memory stays bounded (ORT's
    # CalibMaxIntermediateOutputs would be the obvious knob, but 1.32 drops the data it clears)
    extra: dict[str, Any] = {"CalibStridedMinMax": data.reader(batch, samples).stride()}
    if method_name == "percentile":
        extra["CalibPercentile"] = float(_param(params, "percentile", 99.999))
    if params.get("symmetric_activations"):
        extra["ActivationSymmetric"] = True
    if fmt == "qdq" and not params.get("quantize_matmul_outputs", False):
        # a MatMul output feeding a float op (a residual Add, GELU) gains nothing from a Q/DQ
        # pair and loses much: BERT's FFN outputs span +-200 for the [CLS] token, and one u8
        # scale over that range took all-MiniLM-L6-v2's min cosine from 0.98 to 0.91
        extra["OpTypesToExcludeOutputQuantization"] = ["MatMul"]
    cache = ctx.workdir / f"calibration_{method_name}.json"
    cache.unlink(missing_ok=True)
    external = uses_external_data(src)

    per_channel_override: bool | None = None
    # the search's probes: the fully quantized model with some nodes given back their float
    # inputs (graph surgery, a second or two) instead of a new quantize_static run per probe
    fast = fmt == "qdq" and bool(_param(params, "fast_search", True))
    full_builds: dict[bool, tuple[frozenset[str], Path]] = {}

    def build(exclude: list[str], out: Path, per_tensor: bool = False) -> None:
        nonlocal per_channel_override
        per_channel_override = False if per_tensor else None
        pc_now = False if per_tensor else per_channel
        wanted = frozenset(exclude)
        base = full_builds.get(pc_now)
        if fast and base is not None and base[0] <= wanted and base[1].exists():
            restore_float(base[1], src, wanted - base[0], out)
            return
        try:
            with _quiet():
                quantize_static(
                    str(src),
                    str(out),
                    data.reader(batch, samples),
                    quant_format=QuantFormat.QDQ if fmt == "qdq" else QuantFormat.QOperator,
                    per_channel=per_channel
                    if per_channel_override is None
                    else per_channel_override,
                    reduce_range=reduce_range,
                    activation_type=act_t,
                    weight_type=weight_t,
                    nodes_to_exclude=exclude or None,
                    op_types_to_quantize=op_types,
                    use_external_data_format=external,
                    calibrate_method=methods[method_name],
                    extra_options=extra,
                    calibration_cache_path=str(cache),
                )
        except Exception as e:
            raise PassError(f"static int8 quantization of {str(src)!r} failed: {e}") from e
        if fast and pc_now not in full_builds:
            from edgeloop.optimize._model import copy_model

            kept = copy_model(out, ctx.workdir / f"quantized_base_{int(pc_now)}.onnx")
            full_builds[pc_now] = (wanted, kept)

    from edgeloop.optimize._prepare import PER_CHANNEL_OPSET, opset_of

    opset_warning: list[str] = []
    if opset_of(model) < PER_CHANNEL_OPSET and (pc == "auto" or per_channel):
        # per-channel DequantizeLinear (``axis``) is invalid before opset 13: per tensor, as
        # NNCF does, rather than a graph ONNX Runtime rejects
        per_channel, pc = False, False
        opset_warning.append(
            f"opset {opset_of(model)} < {PER_CHANNEL_OPSET}: int8 weights are per tensor "
            "(per-channel needs opset 13; the preprocess pass upgrades the opset when it can)"
        )
    if pc == "auto":
        per_channel = not _per_tensor_suffices(build, ctx, params)

    details: dict[str, Any] = {
        "preflight": pre,
        "calibration_samples": min(samples, len(next(iter((data.calib or data.inputs).values())))),
        "calibration": method_name,
        "activation_type": str(act_t),
        "weight_type": str(weight_t),
        "reduce_range": reduce_range,
        "per_channel": per_channel,
        "format": fmt.upper(),
        "op_types": op_types or "all ONNX Runtime quantizes",
        "kept_float_ops": kept_float_ops,
    }
    if smoothing is not None:
        details["smooth"] = smoothing
    dest = _mixed(
        src,
        build,
        _out(state, ctx, "quantize"),
        params,
        ctx,
        tuple(params.get("op_types") or MAC_OP_TYPES),
        details,
        grouped=bool(_param(params, "search_groups", True)) and not params.get("op_types"),
        quantized_types=set(op_types) if op_types else None,
    )
    warnings: list[str] = list(opset_warning)
    bc = _param(params, "bias_correction", "auto")
    if fmt == "qdq" and bc not in (False, "false", "off"):
        dest = _bias_correction(dest, src, data, ctx, details, forced=bc is True or bc == "on")
    if fmt == "qdq":
        kept = set(map(str, details.get("mixed_precision", {}).get("kept_float_nodes", [])))
        warnings += _float_leftovers(dest, kept | set(map(str, params.get("exclude") or [])))
        details["runtime_fusion"] = unfused_qdq(dest)
        if details["runtime_fusion"]["unfused"]:
            warnings.append(
                f"{details['runtime_fusion']['unfused']} Q/DQ node(s) stay unfused at run time "
                f"(float ops fed by DQ: {details['runtime_fusion']['float_ops_fed_by_dq']})"
            )
    if pre["int8_verdict"] in ("unlikely faster", "no gain"):
        warnings.append(
            f"int8 preflight: {pre['int8_verdict']} on {pre['target']} ({pre['reason']})"
        )
    return ModelState("onnx", onnx_path=dest, notes=list(state.notes)), StepResult(
        "quantize", dict(params), details, warnings
    )


def _bias_correction(
    dest: Path, src: Path, data: Any, ctx: PassContext, details: dict[str, Any], forced: bool
) -> Path:
    """Fold each Conv/Gemm's mean int8 output error (on calibration data) into its bias; kept
    when ``forced`` or when it lowers the output error on the held-out evaluation samples."""
    from edgeloop.optimize._biascorr import bias_correct, final_error

    def first(arrays: Mapping[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
        return {k: v[:n] for k, v in arrays.items()}

    calib = first(data.calib or data.inputs, 128)
    held = first(data.inputs, 128)
    out = ctx.workdir / f"biascorr_{dest.stem}.onnx"
    try:
        fixed, info = bias_correct(dest, src, calib, out)
        if not info["corrected_layers"]:
            details["bias_correction"] = {**info, "applied": False}
            return dest
        fl = load_onnx(src)
        before = final_error(load_onnx(dest), fl, held)
        after = final_error(load_onnx(fixed), fl, held)
    except Exception as e:  # a graph it cannot read: the uncorrected model stands
        details["bias_correction"] = {"applied": False, "reason": f"{type(e).__name__}: {e}"}
        return dest
    keep = info["corrected_layers"] > 0 and (forced or after < before)
    details["bias_correction"] = {
        **info,
        "applied": keep,
        "output_error_before": before,
        "output_error_after": after,
    }
    if not keep:
        return dest
    from edgeloop.optimize._model import copy_model

    return copy_model(fixed, dest)


def restore_float(qdq_path: Path, source_path: Path, names: frozenset[str], out: Path) -> Path:
    """The QDQ model at ``qdq_path`` with the ``names`` nodes reading their float inputs again.

    Each named node gets its inputs from ``source_path`` (the float model that was quantized:
    the activation a QuantizeLinear read, the float weight initializer), as if it had been
    excluded from quantization; Q/DQ nodes and quantized weights nobody reads any more go.
    """
    model = load_onnx(qdq_path)
    source = load_onnx(source_path)
    orig = {n.name: n for n in source.graph.node if n.name}
    src_inits = {t.name: t for t in source.graph.initializer}
    g = model.graph
    have = {t.name for t in g.initializer}
    produced = {o for n in g.node for o in n.output}
    readers: dict[str, list[onnx.NodeProto]] = {}
    for n in g.node:
        for i in n.input:
            readers.setdefault(i, []).append(n)
    drop: list[onnx.NodeProto] = []
    for n in g.node:
        o = orig.get(n.name) if n.name in names else None
        if o is None:
            continue
        for i, name in enumerate(o.input):
            if i >= len(n.input) or n.input[i] == name:
                continue
            if name in src_inits and name in produced:  # the quantizer reused the name for a DQ
                t = onnx.TensorProto()
                t.CopyFrom(src_inits[name])
                t.name = name = f"{name}_float"
                if name not in have:
                    g.initializer.append(t)
                    have.add(name)
            elif name in src_inits and name not in have:
                g.initializer.append(src_inits[name])
                have.add(name)
            n.input[i] = name
        # the node's output goes on in float (as when the quantizer leaves the node out), but
        # only where the Q/DQ pair after it is a plain one: the same readers as in the float
        # model (a Relu/Clip folded into the pair changes them) and none an int8 MAC op
        for k, y in enumerate(n.output):
            _float_output(g, n, k, y, source, readers, names, drop)
    if drop:
        kept_nodes = [n for n in g.node if all(n is not d for d in drop)]
        del g.node[:]
        g.node.extend(kept_nodes)
    outputs = {o.name for o in g.output}
    while True:  # drop Q/DQ left without readers, then what only they read
        read = {i for n in g.node for i in n.input} | outputs
        dead = [
            n
            for n in g.node
            if n.op_type in ("QuantizeLinear", "DequantizeLinear")
            and not any(o in read for o in n.output)
        ]
        if not dead:
            break
        keep = [n for n in g.node if all(n is not d for d in dead)]
        del g.node[:]
        g.node.extend(keep)
    read = {i for n in g.node for i in n.input} | outputs
    inits = [t for t in g.initializer if t.name in read]
    del g.initializer[:]
    g.initializer.extend(inits)
    return save_onnx(model, out, external=uses_external_data(qdq_path))


def _float_output(
    g: onnx.GraphProto,
    node: onnx.NodeProto,
    k: int,
    y: str,
    source: onnx.ModelProto,
    readers: dict[str, list[onnx.NodeProto]],
    names: frozenset[str],
    drop: list[onnx.NodeProto],
) -> None:
    qs = [q for q in readers.get(y, []) if q.op_type == "QuantizeLinear"]
    if len(qs) != 1 or len(readers.get(y, [])) != 1:
        return
    dqs = readers.get(qs[0].output[0], [])
    if len(dqs) != 1 or dqs[0].op_type != "DequantizeLinear":
        return
    dq_out = dqs[0].output[0]
    after = readers.get(dq_out, [])
    src_readers = sorted(n.name for n in source.graph.node if y in n.input)
    src_outputs = {o.name for o in source.graph.output}
    graph_outputs = {o.name for o in g.output}
    if sorted(r.name for r in after) != src_readers:
        return
    if any(r.op_type in MAC_OP_TYPES and r.name not in names for r in after):
        return
    if dq_out in graph_outputs:  # the pair sits in front of a graph output: take its name
        if dq_out not in src_outputs and y not in src_outputs:
            return
        node.output[k] = dq_out
        drop.extend([qs[0], dqs[0]])
        return
    for r in after:
        for i, inp in enumerate(r.input):
            if inp == dq_out:
                r.input[i] = y


TRANSFORMER_OPS = ("LayerNormalization", "Softmax", "SkipLayerNormalization", "Attention")


def _op_types(
    model: onnx.ModelProto, params: Mapping[str, Any]
) -> tuple[list[str] | None, list[str]]:
    """The op types static int8 quantizes, and the quantizable ones it keeps float.

    ``float_ops: auto`` (default): in a transformer (LayerNormalization or Softmax in the graph)
    only Conv/MatMul/Gemm are quantized; LayerNorm, Softmax, residual Adds, Mul, Div and the
    rest stay float, where every tool's all-op default loses the model (min cosine 0.17-0.23 on
    all-MiniLM-L6-v2). Elsewhere, everything ONNX Runtime can quantize. ``none``: everything.
    ``op_types`` given: exactly those.
    """
    given = params.get("op_types")
    if given:
        return [str(t) for t in given], []
    mode = str(_param(params, "float_ops", "auto")).lower()
    if mode not in ("auto", "none"):
        raise InputError(f"float_ops must be auto or none; got {mode!r}")
    present = {n.op_type for n in model.graph.node}
    if mode == "none" or not present & set(TRANSFORMER_OPS):
        return None, []
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    moves = {"Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten", "Slice", "Split"}
    quantizable = set(QDQRegistry) | set(QLinearOpsRegistry)
    kept = sorted((present & quantizable) - set(MAC_OP_TYPES) - moves)
    return list(MAC_OP_TYPES), kept


def _per_tensor_suffices(
    build: Callable[..., None], ctx: PassContext, params: Mapping[str, Any]
) -> bool:
    """``per_channel: auto``: per-tensor weights run a little faster; use them when a budget is
    set and the per-tensor model meets it, else per-channel (the accurate default)."""
    budget, evaluator = ctx.options.get("budget"), ctx.options.get("evaluator")
    if not budget or evaluator is None or params.get("exclude"):
        return False
    probe = ctx.workdir / "per_tensor_probe.onnx"
    build([], probe, per_tensor=True)
    q = evaluator.score(probe, latency=False)
    return not budget.shortfall(q, ctx.options["baseline"])


def _float_leftovers(path: Path, intended: set[str]) -> list[str]:
    """Warn about MAC nodes the quantizer left in float without being asked to."""
    model = load_onnx(path, with_weights=False)
    producers = {o: n.op_type for n in model.graph.node for o in n.output}
    left: list[str] = []
    for n in model.graph.node:
        if n.op_type in MAC_OP_TYPES:
            fed = any(producers.get(i) == "DequantizeLinear" for i in n.input)
            if not fed and n.name not in intended:
                left.append(n.name or n.op_type)
    if not left:
        return []
    shown = ", ".join(left[:8]) + (" ..." if len(left) > 8 else "")
    return [
        f"{len(left)} Conv/MatMul/Gemm node(s) stay float (the mode cannot handle them): {shown}"
    ]
