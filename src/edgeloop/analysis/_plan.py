"""The graph ONNX Runtime would execute, read from the ONNX file: the cost model's graph side.

``execution_plan`` walks the graph in topological order after shape inference and returns one
:class:`Step` per kernel ONNX Runtime's CPU provider would run at its default optimization level
(``ORT_ENABLE_ALL``), without running it:

- constant folding: a node whose inputs are all constants (initializers, ``Constant`` nodes,
  folded outputs, ``Shape`` of a fully known shape) runs once at load time, not per inference;
  ``DequantizeLinear`` is left alone, as ONNX Runtime leaves it for the QDQ fusions;
- the fusions that change the cost of a CNN or an MLP: Conv + BatchNormalization, Conv + bias or
  residual ``Add`` + activation (``FusedConv``, NCHWc ``Sum``), MatMul + ``Add`` of a constant
  bias on a 2-D input -> Gemm, Gemm + activation; and the QDQ fusions: ``DequantizeLinear`` ->
  Conv/MatMul/Gemm -> (``Relu``) -> ``QuantizeLinear`` runs as one int8 kernel (``QLinearConv``,
  ``QLinearMatMul``, ``MatMulIntegerToFloat``), its DQ and Q nodes folded in; and dynamic
  quantization's ``DynamicQuantizeLinear`` -> ``MatMulInteger`` -> ``Cast`` -> ``Mul`` (by the
  scales' product) -> ``Add`` of a bias runs as one ``DynamicQuantizeMatMul``;
- views: ``Reshape``, ``Flatten``, ``Squeeze``, ``Unsqueeze``, ``Identity``, ``Dropout`` reuse
  their input's buffer (a per-node overhead, no bytes).

Each step carries its MACs (``_macs``), the bytes it reads and writes (activations at their
element size, weights at the size they are stored: int8 weights as one byte), its precision and
the kind of kernel that runs it. ``activation_peak`` is a liveness pass over the steps in order:
a buffer lives from the step that writes it to the last step that reads it (graph outputs to
the end), views share their input's buffer, and the peak is the largest sum of live bytes.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgeloop.analysis._macs import Shape, node_macs
from edgeloop.analysis._stats import (
    _fix_input_shapes,
    _infer,
    _shape_table,
    _symbolic_infer,
    load_model,
)

__all__ = ["ExecutionPlan", "Step", "activation_peak", "execution_plan"]

CONV_OPS = frozenset({"Conv", "ConvInteger", "QLinearConv", "FusedConv", "NhwcConv"})
GEMM_OPS = frozenset(
    {
        "MatMul",
        "Gemm",
        "MatMulInteger",
        "QLinearMatMul",
        "FusedMatMul",
        "MatMulIntegerToFloat",
        "MatMulNBits",
        "Einsum",
        "Attention",
        "MultiHeadAttention",
        "GroupQueryAttention",
    }
)
INT8_OPS = frozenset(
    {"ConvInteger", "QLinearConv", "MatMulInteger", "QLinearMatMul", "MatMulIntegerToFloat"}
)
RECURRENT_OPS = frozenset({"RNN", "GRU", "LSTM"})
VIEW_OPS = frozenset({"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Dropout"})
LAYOUT_OPS = frozenset(
    {
        "Transpose",
        "Concat",
        "Split",
        "Slice",
        "Gather",
        "GatherElements",
        "GatherND",
        "Pad",
        "Resize",
        "Upsample",
        "Tile",
        "Expand",
        "DepthToSpace",
        "SpaceToDepth",
        "Cast",
        "Where",
        "ScatterND",
        "ScatterElements",
    }
)
POOL_OPS = frozenset({"MaxPool", "AveragePool", "LpPool", "GlobalMaxPool", "GlobalAveragePool"})
# element-wise and normalisation ops that evaluate a transcendental (exp, erf, tanh, sqrt ...)
# per element: several times the work of an add
TRANSCENDENTAL_OPS = frozenset(
    {
        "Sigmoid",
        "Tanh",
        "Exp",
        "Log",
        "Erf",
        "Gelu",
        "Softmax",
        "LogSoftmax",
        "HardSwish",
        "Mish",
        "Softplus",
        "Elu",
        "Selu",
        "Sqrt",
        "Pow",
        "LayerNormalization",
        "SkipLayerNormalization",
        "InstanceNormalization",
        "GroupNormalization",
        "Sin",
        "Cos",
    }
)
ACTIVATIONS = frozenset(
    {"Relu", "Clip", "LeakyRelu", "Sigmoid", "Tanh", "HardSigmoid", "HardSwish"}
)
CONTROL_OPS = frozenset({"If", "Loop", "Scan"})
# ops ONNX Runtime runs on uint8 between a DequantizeLinear and a QuantizeLinear
QDQ_OPS = frozenset(
    {
        "Add",
        "Mul",
        "GlobalAveragePool",
        "AveragePool",
        "MaxPool",
        "Concat",
        "Sigmoid",
        "LeakyRelu",
        "Softmax",
        "Resize",
        "Reshape",
        "Transpose",
        "Squeeze",
        "Unsqueeze",
        "Flatten",
        "Gather",
        "Slice",
        "Split",
    }
)
NONDETERMINISTIC = frozenset(
    {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial"}
)
DEFAULT_DOMAINS = ("", "ai.onnx")


@dataclass
class Step:
    """One kernel ONNX Runtime runs per inference: a node and the nodes fused into it.

    ``kind`` is the kernel family the latency comes from: ``conv``, ``pwconv`` (1x1),
    ``dwconv`` (a grouped convolution with one input channel per group), ``gemm``,
    ``recurrent``, ``pool``, ``elementwise``, ``transcendental``, ``layout`` (copies,
    gathers, casts), ``view`` (no bytes) or ``control`` (If/Loop/Scan: its subgraphs' MACs).
    ``bytes`` is what it reads and writes once: activation inputs, weights and outputs.
    """

    name: str
    op_type: str
    kind: str
    precision: str
    macs: int
    macs_known: bool
    weight_bytes: int
    input_bytes: int
    output_bytes: int
    inputs: list[str]
    outputs: list[str]
    fused: list[str] = field(default_factory=list)
    elements: int = 0  # output elements (element-wise work)
    # (M, K, N) of the GEMM a MAC kernel runs as (a convolution: output pixels, input channels
    # x kernel area, output channels; a depthwise one: output pixels, kernel area, channels)
    dims: tuple[int, int, int] | None = None
    # a convolution's (input channels, output channels, groups, spatial rank): whether ONNX
    # Runtime runs it in its blocked NCHWc layout or on the generic path depends on them
    conv: tuple[int, int, int, int] | None = None

    @property
    def bytes(self) -> int:
        return self.weight_bytes + self.input_bytes + self.output_bytes


@dataclass
class ExecutionPlan:
    """The steps in execution order, and what the model holds.

    ``weight_bytes`` counts the constants the steps read, at their stored size (each once);
    ``graph_inputs`` are the inputs a caller feeds; ``tensor_bytes`` the size of every
    activation (None where a shape stayed unknown); ``aliases`` maps a view's output to the
    tensor whose buffer it shares.
    """

    steps: list[Step]
    weight_bytes: int
    graph_inputs: list[str]
    graph_outputs: list[str]
    tensor_bytes: dict[str, int]
    aliases: dict[str, str]
    assumed_shapes: dict[str, tuple[int, ...]]
    unknown_shapes: list[str]
    size_bytes: int
    folded: list[str]


def _itemsize(elem_type: int) -> float:
    if elem_type in (TensorProto.INT4, TensorProto.UINT4):
        return 0.5
    try:
        return float(np.dtype(helper.tensor_dtype_to_np_dtype(elem_type)).itemsize)
    except (KeyError, TypeError, ValueError):
        return 4.0


def _domain(node: onnx.NodeProto) -> str:
    return "" if node.domain in DEFAULT_DOMAINS else node.domain


def _subgraphs(node: onnx.NodeProto) -> Iterator[onnx.GraphProto]:
    for a in node.attribute:
        if a.type == onnx.AttributeProto.GRAPH:
            yield a.g
        elif a.type == onnx.AttributeProto.GRAPHS:
            yield from a.graphs


def _subgraph_macs(node: onnx.NodeProto, table: Mapping[str, Shape | None]) -> tuple[int, bool]:
    total, known = 0, True
    for g in _subgraphs(node):
        for inner in g.node:
            counts, macs = node_macs(inner, lambda n: table.get(n))
            if counts:
                if macs is None:
                    known = False
                else:
                    total += macs
            sub, sub_known = _subgraph_macs(inner, table)
            total += sub
            known = known and sub_known
    return total, known


def _elem_types(model: onnx.ModelProto) -> dict[str, int]:
    types: dict[str, int] = {}
    g = model.graph
    for vi in [*g.input, *g.value_info, *g.output]:
        if vi.type.HasField("tensor_type") and vi.type.tensor_type.elem_type:
            types[vi.name] = vi.type.tensor_type.elem_type
    for t in g.initializer:
        types[t.name] = t.data_type
    for node in g.node:
        if node.op_type == "Constant" and node.output:
            for a in node.attribute:
                if a.name == "value" and a.type == onnx.AttributeProto.TENSOR:
                    types[node.output[0]] = a.t.data_type
    return types


def _shapes(work: onnx.ModelProto) -> tuple[onnx.ModelProto, dict[str, Shape | None]]:
    """Shapes after ONNX's inference, and ONNX Runtime's symbolic one where that leaves holes."""
    inferred = _infer(work)
    table = _shape_table(inferred)
    needed = {o for n in inferred.graph.node for o in n.output if o}
    if any(table.get(o) is None for o in needed):
        symbolic = _symbolic_infer(work)
        if symbolic is not None:
            sym_table = _shape_table(symbolic)
            filled = {k: v for k, v in sym_table.items() if v is not None}
            if len(filled.keys() & needed) > sum(table.get(o) is not None for o in needed):
                merged = dict(table)
                merged.update(filled)
                return symbolic, merged
    return inferred, table


def _is_depthwise(node: onnx.NodeProto, shape: Mapping[str, Shape | None]) -> bool:
    group = 1
    for a in node.attribute:
        if a.name == "group":
            group = int(a.i)
    w_idx = 3 if node.op_type == "QLinearConv" else 1
    w = shape.get(node.input[w_idx]) if len(node.input) > w_idx else None
    return group > 1 and w is not None and len(w) >= 2 and w[1] == 1


def _conv_kind(node: onnx.NodeProto, shape: Mapping[str, Shape | None]) -> str:
    """``dwconv`` (one input channel per group), ``pwconv`` (1x1, one group) or ``conv``."""
    if _is_depthwise(node, shape):
        return "dwconv"
    group = next((int(a.i) for a in node.attribute if a.name == "group"), 1)
    w_idx = 3 if node.op_type == "QLinearConv" else 1
    w = shape.get(node.input[w_idx]) if len(node.input) > w_idx else None
    if group == 1 and w is not None and len(w) > 2 and all(k == 1 for k in w[2:]):
        return "pwconv"
    return "conv"


def _gemm_dims(
    node: onnx.NodeProto, kind: str, shape: Mapping[str, Shape | None]
) -> tuple[int, int, int] | None:
    """(M, K, N) of a MAC kernel, for the throughput lookup (see :class:`Step`)."""
    op = node.op_type

    def get(i: int) -> Shape | None:
        return shape.get(node.input[i]) if len(node.input) > i and node.input[i] else None

    y = shape.get(node.output[0]) if node.output else None
    if kind in ("conv", "pwconv", "dwconv"):
        w = get(3 if op == "QLinearConv" else 1)
        if y is None or w is None or len(y) < 3 or len(w) < 3:
            return None
        group = next((int(a.i) for a in node.attribute if a.name == "group"), 1)
        pixels = math.prod(y[2:]) * y[0]
        area = math.prod(w[2:])
        if kind == "dwconv":
            return pixels, area, y[1]
        return pixels, w[1] * area, max(1, y[1] // max(group, 1))
    if op in ("Gemm",):
        a, b = get(0), get(1)
        if a is None or b is None or len(a) != 2 or len(b) != 2:
            return None
        trans_a = next((int(x.i) for x in node.attribute if x.name == "transA"), 0)
        trans_b = next((int(x.i) for x in node.attribute if x.name == "transB"), 0)
        m, k = (a[1], a[0]) if trans_a else (a[0], a[1])
        return m, k, b[0] if trans_b else b[1]
    if op in ("MatMul", "MatMulInteger", "FusedMatMul", "MatMulIntegerToFloat", "QLinearMatMul"):
        a = get(0)
        b = get(3 if op == "QLinearMatMul" else 1)
        if a is None or b is None or not a or not b:
            return None
        return max(1, math.prod(a[:-1])), a[-1], b[-1] if len(b) >= 2 else 1
    return None


def _partial_dims(model: onnx.ModelProto) -> dict[str, tuple[int | None, ...]]:
    """Every tensor's dims as the model declares them: an int where static, else None."""
    out: dict[str, tuple[int | None, ...]] = {}
    g = model.graph
    for vi in [*g.input, *g.value_info, *g.output]:
        if vi.type.HasField("tensor_type") and vi.type.tensor_type.HasField("shape"):
            out[vi.name] = tuple(
                int(d.dim_value) if d.HasField("dim_value") and d.dim_value > 0 else None
                for d in vi.type.tensor_type.shape.dim
            )
    for t in g.initializer:
        out[t.name] = tuple(int(d) for d in t.dims)
    return out


def _const_ints(model: onnx.ModelProto) -> dict[str, list[int]]:
    """Small integer constants (initializers and Constant nodes): Gather indices, Slice ends."""
    out: dict[str, list[int]] = {}
    tensors = [(t.name, t) for t in model.graph.initializer]
    for node in model.graph.node:
        if node.op_type == "Constant" and node.output:
            for a in node.attribute:
                if a.name == "value" and a.type == onnx.AttributeProto.TENSOR:
                    tensors.append((node.output[0], a.t))
    for name, t in tensors:
        if t.data_type in (TensorProto.INT64, TensorProto.INT32) and math.prod(t.dims) <= 16:
            out[name] = [int(v) for v in numpy_helper.to_array(t).reshape(-1)]
    return out


def _static_shape_read(
    node: onnx.NodeProto,
    static: Mapping[str, tuple[int | None, ...]],
    readers: Mapping[str, list[onnx.NodeProto]],
    const_ints: Mapping[str, list[int]],
) -> bool:
    """Whether ONNX Runtime folds this ``Shape``/``Size``: its input's shape is static, or every
    reader only gathers static dims of it (its constant folding handles Shape -> Gather)."""
    dims = static.get(node.input[0])
    if dims is None:
        return False
    if all(d is not None for d in dims):
        return True
    if node.op_type != "Shape" or any(a.name in ("start", "end") for a in node.attribute):
        return False
    users = readers.get(node.output[0], [])
    if not users:
        return False
    for user in users:
        if user.op_type != "Gather" or len(user.input) < 2:
            return False
        idx = const_ints.get(user.input[1])
        if idx is None or any(dims[i] is None for i in idx if -len(dims) <= i < len(dims)):
            return False
    return True


def _has_dynamic_input(model: onnx.ModelProto) -> bool:
    init_names = {t.name for t in model.graph.initializer}
    for vi in model.graph.input:
        if vi.name in init_names or not vi.type.HasField("tensor_type"):
            continue
        dims = vi.type.tensor_type.shape.dim
        if not all(d.HasField("dim_value") and d.dim_value > 0 for d in dims):
            return True
    return False


def _conv_shape(
    node: onnx.NodeProto, shape: Mapping[str, Shape | None]
) -> tuple[int, int, int, int] | None:
    w_idx = 3 if node.op_type == "QLinearConv" else 1
    w = shape.get(node.input[w_idx]) if len(node.input) > w_idx else None
    if w is None or len(w) < 3:
        return None
    group = next((int(a.i) for a in node.attribute if a.name == "group"), 1)
    return w[1] * group, w[0], group, len(w) - 2


def execution_plan(
    model: str | Path | bytes | onnx.ModelProto,
    *,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
) -> ExecutionPlan:
    """The steps ONNX Runtime's CPU provider would run for one inference of ``model``.

    Dynamic leading (batch) dimensions are taken as 1, and ``input_shapes`` pins any input
    (``{"input_ids": (1, 128)}``), as in :func:`edgeloop.analysis.graph_stats`.
    """
    proto, size = load_model(model)
    if proto.functions:
        from onnx import inliner

        proto = inliner.inline_local_functions(proto)
    work = copy.deepcopy(proto)
    assumed = _fix_input_shapes(work, input_shapes or {})
    inferred, table = _shapes(work)
    types = _elem_types(inferred)
    g = proto.graph
    nodes = list(g.node)
    # the dims ONNX Runtime sees as static: the model's own, before any pinning
    static = _partial_dims(proto if not _has_dynamic_input(proto) else _infer(copy.deepcopy(proto)))
    if not _has_dynamic_input(proto):
        static.update({k: v for k, v in table.items() if v is not None})
    const_ints = _const_ints(proto)
    node_readers: dict[str, list[onnx.NodeProto]] = {}
    for node in g.node:
        for name in node.input:
            if name:
                node_readers.setdefault(name, []).append(node)

    init_names = {t.name for t in g.initializer}
    # constants and the bytes they are stored in
    const_bytes: dict[str, int] = {}
    for t in g.initializer:
        const_bytes[t.name] = int(math.prod(t.dims) * _itemsize(t.data_type))
    folded: list[str] = []
    folded_idx: set[int] = set()
    for k, node in enumerate(nodes):
        node_outs = [o for o in node.output if o]
        label = node.name or (node_outs[0] if node_outs else node.op_type)
        if node.op_type == "Constant" and _domain(node) == "":
            for o in node_outs:
                s = table.get(o)
                const_bytes[o] = (
                    int(math.prod(s) * _itemsize(types.get(o, 1))) if s is not None else 4
                )
            folded.append(label)
            folded_idx.add(k)
            continue
        if (
            _domain(node) == ""
            and node.op_type not in NONDETERMINISTIC | {"DequantizeLinear"} | CONTROL_OPS
            and node_outs
        ):
            ins = [i for i in node.input if i]
            # ONNX Runtime folds Shape only where the shape is static in the model itself:
            # a dimension pinned here (a dynamic batch or sequence) is symbolic to it
            shape_of_known = node.op_type in ("Shape", "Size") and (
                bool(ins) and _static_shape_read(node, static, node_readers, const_ints)
            )
            if shape_of_known or (ins and all(i in const_bytes for i in ins)):
                for o in node_outs:
                    s = table.get(o)
                    const_bytes[o] = (
                        int(math.prod(s) * _itemsize(types.get(o, 1))) if s is not None else 4
                    )
                folded.append(label)
                folded_idx.add(k)
                continue

    consumers: dict[str, list[int]] = {}
    for i, node in enumerate(nodes):
        for name in node.input:
            if name:
                consumers.setdefault(name, []).append(i)
        for sub in _subgraphs(node):  # outer-scope names a subgraph reads
            for inner in sub.node:
                for name in inner.input:
                    if name:
                        consumers.setdefault(name, []).append(i)
    producer: dict[str, int] = {o: i for i, n in enumerate(nodes) for o in n.output if o}
    graph_outputs = [o.name for o in g.output]
    out_set = set(graph_outputs)

    def label_of(i: int) -> str:
        n = nodes[i]
        return n.name or (n.output[0] if n.output else f"{n.op_type}_{i}")

    live = [i for i in range(len(nodes)) if i not in folded_idx]
    live_set = set(live)

    def tbytes(name: str) -> int | None:
        s = table.get(name)
        if s is None:
            return None
        return int(math.prod(s) * _itemsize(types.get(name, TensorProto.FLOAT)))

    def sole_consumer(name: str) -> int | None:
        """The one live node reading ``name``, when it is not also a graph output."""
        users = [c for c in consumers.get(name, []) if c in live_set]
        if len(users) != 1 or name in out_set:
            return None
        return users[0]

    def is_const(name: str) -> bool:
        return name in const_bytes

    def dq_source(name: str) -> int | None:
        """The DequantizeLinear node producing ``name``, if any."""
        p = producer.get(name)
        if p is not None and nodes[p].op_type == "DequantizeLinear" and p in live_set:
            return p
        return None

    absorbed: set[int] = set()  # nodes fused into another step
    int8_heads: dict[int, list[int]] = {}  # MAC node -> the DQ/Q/Relu nodes fused into it
    # QDQ: DQ(activation) and DQ(const weight) into a MAC op, optionally -> Relu -> Q
    for i in live:
        node = nodes[i]
        if _domain(node) != "" or node.op_type not in ("Conv", "MatMul", "Gemm"):
            continue
        if len(node.input) < 2:
            continue
        a_dq, w_dq = dq_source(node.input[0]), dq_source(node.input[1])
        weight_is_q = w_dq is not None and is_const(nodes[w_dq].input[0])
        if a_dq is None or not weight_is_q:
            continue
        group = [w_dq] if w_dq is not None else []
        # the activation DQ folds when every live reader of it is a QDQ MAC op; checked below
        group.append(a_dq)
        if len(node.input) > 2 and node.input[2]:
            b_dq = dq_source(node.input[2])
            if b_dq is not None:
                group.append(b_dq)
        out = node.output[0]
        nxt = sole_consumer(out)
        if nxt is not None and nodes[nxt].op_type == "Relu":
            relu_out = nodes[nxt].output[0]
            after = sole_consumer(relu_out)
            if after is not None and nodes[after].op_type == "QuantizeLinear":
                group += [nxt, after]
        elif nxt is not None and nodes[nxt].op_type == "QuantizeLinear":
            group.append(nxt)
        int8_heads[i] = group
    # QDQ around other ops: DQ -> Add/Pool/Concat ... -> Q runs as one uint8 kernel
    # (QLinearAdd, QLinearGlobalAveragePool, NhwcMaxPool, QLinearConcat ...; DQ -> Q drops
    # around Reshape/Transpose)
    for i in live:
        node = nodes[i]
        if i in int8_heads or _domain(node) != "" or node.op_type not in QDQ_OPS:
            continue
        act = [n for n in node.input if n and not is_const(n)]
        dqs = [dq_source(n) for n in act]
        nxt = sole_consumer(node.output[0]) if node.output else None
        if not act or any(d is None for d in dqs):
            continue
        if nxt is None or nodes[nxt].op_type != "QuantizeLinear":
            continue
        int8_heads[i] = [*dict.fromkeys(d for d in dqs if d is not None), nxt]
    for head, group in int8_heads.items():
        kept = []
        for j in group:
            if nodes[j].op_type == "DequantizeLinear":
                readers = [c for c in consumers.get(nodes[j].output[0], []) if c in live_set]
                if not all(c in int8_heads for c in readers):
                    continue  # some fp32 op still reads the dequantized tensor: DQ stays
            kept.append(j)
        int8_heads[head] = kept
        absorbed.update(kept)

    fp32_fused: dict[int, list[int]] = {}
    for i in live:
        node = nodes[i]
        if i in absorbed or i in int8_heads or _domain(node) != "":
            continue
        chain: list[int] = []
        if node.op_type == "Conv":
            cur = node.output[0]
            nxt = sole_consumer(cur)
            if (
                nxt is not None
                and nodes[nxt].op_type == "BatchNormalization"
                and all(is_const(x) for x in nodes[nxt].input[1:] if x)
            ):
                chain.append(nxt)
                cur = nodes[nxt].output[0]
                nxt = sole_consumer(cur)
            if (
                nxt is not None
                and nodes[nxt].op_type in ("Add", "Sum")
                and len(nodes[nxt].input) == 2
            ):
                chain.append(nxt)
                cur = nodes[nxt].output[0]
                nxt = sole_consumer(cur)
            if nxt is not None and nodes[nxt].op_type in ACTIVATIONS:
                chain.append(nxt)
        elif node.op_type in ("MatMul", "Gemm"):
            cur = node.output[0]
            nxt = sole_consumer(cur)
            a = table.get(node.input[0])
            if (
                node.op_type == "MatMul"
                and nxt is not None
                and nodes[nxt].op_type == "Add"
                and a is not None
                and len(a) == 2
                and any(is_const(x) for x in nodes[nxt].input)
            ):
                chain.append(nxt)
                cur = nodes[nxt].output[0]
                nxt = sole_consumer(cur)
            if (
                (node.op_type == "Gemm" or chain)
                and nxt is not None
                and nodes[nxt].op_type in ACTIVATIONS
            ) or (  # MatMul * or / a constant scalar: FusedMatMul (attention's scaling)
                node.op_type == "MatMul"
                and not chain
                and nxt is not None
                and nodes[nxt].op_type in ("Mul", "Div")
                and len(nodes[nxt].input) == 2
                and nodes[nxt].input[0] == cur
                and is_const(nodes[nxt].input[1])
                and table.get(nodes[nxt].input[1]) in ((), (1,))
            ):
                chain.append(nxt)
        if chain:
            fp32_fused[i] = chain
            absorbed.update(chain)

    for i in live:  # Gelu's erf form: x/sqrt(2) -> Erf -> +1 -> *x -> *0.5 (Gelu, BiasGelu)
        node = nodes[i]
        if node.op_type != "Erf" or i in absorbed or _domain(node) != "":
            continue
        pre = producer.get(node.input[0])
        if pre is None or nodes[pre].op_type not in ("Div", "Mul") or pre in absorbed:
            continue
        x = nodes[pre].input[0]
        group = [pre]
        cur, ok = node.output[0], True
        for want in ("Add", "Mul"):
            nxt = sole_consumer(cur)
            if nxt is None or nodes[nxt].op_type != want or nxt in absorbed:
                ok = False
                break
            group.append(nxt)
            cur = nodes[nxt].output[0]
        if not ok or x not in nodes[group[-1]].input:  # the "* x" of x * (1 + erf(...))
            continue
        nxt = sole_consumer(cur)
        if nxt is not None and nodes[nxt].op_type == "Mul" and nxt not in absorbed:
            group.append(nxt)
        bias = producer.get(x)
        gelu_members = {*group, i}
        if (
            bias is not None
            and nodes[bias].op_type == "Add"
            and bias not in absorbed
            and bias not in fp32_fused
            and any(is_const(n) for n in nodes[bias].input)
            and all(c in gelu_members for c in consumers.get(x, []) if c in live_set)
        ):
            group.append(bias)
        fp32_fused[i] = group
        absorbed.update(group)

    steps: list[Step] = []
    weight_seen: set[str] = set()
    weight_total = 0
    unknown_shapes: list[str] = []
    aliases: dict[str, str] = {}
    for i in live:
        if i in absorbed:
            continue
        node = nodes[i]
        group = int8_heads.get(i, fp32_fused.get(i, []))
        members = [i, *group]
        member_outs = {o for j in members for o in nodes[j].output if o}
        # activation inputs: read from outside the group, not constants
        act_in: list[str] = []
        w_in: list[str] = []
        for j in members:
            for name in nodes[j].input:
                if not name or name in member_outs:
                    continue
                dq = dq_source(name)
                if dq is not None and dq in members:
                    src = nodes[dq].input[0]
                    (w_in if is_const(src) else act_in).append(src)
                    continue
                (w_in if is_const(name) else act_in).append(name)
        # outputs: those read outside the group, or graph outputs
        outs: list[str] = []
        for j in members:
            for o in nodes[j].output:
                if not o:
                    continue
                readers = [c for c in consumers.get(o, []) if c not in members]
                if readers or o in out_set:
                    outs.append(o)
        if not outs:  # a group whose last output nobody reads: its last member's output
            outs = [o for o in nodes[members[-1]].output if o][:1]
        w_bytes = 0
        for name in dict.fromkeys(w_in):
            b = const_bytes.get(name, 0)
            w_bytes += b
            if name not in weight_seen:
                weight_seen.add(name)
                weight_total += b
        in_sizes = [tbytes(n) for n in dict.fromkeys(act_in)]
        out_sizes = [tbytes(n) for n in outs]
        for n, size_of in zip(
            [*dict.fromkeys(act_in), *outs], [*in_sizes, *out_sizes], strict=True
        ):
            if size_of is None:
                unknown_shapes.append(n)
        counts, macs = node_macs(node, lambda n: table.get(n))
        macs_known = not counts or macs is not None
        op = node.op_type
        if op in CONTROL_OPS:
            macs, macs_known = _subgraph_macs(node, table)
            kind = "control"
        elif op in CONV_OPS:
            kind = _conv_kind(node, table)
        elif op in GEMM_OPS:
            kind = "gemm"
        elif op in RECURRENT_OPS:
            kind = "recurrent"
        elif op in VIEW_OPS:
            kind = "view"
        elif op in LAYOUT_OPS:
            kind = "layout"
        elif op in POOL_OPS:
            kind = "pool"
        elif op in TRANSCENDENTAL_OPS:
            kind = "transcendental"
        else:
            kind = "elementwise"
        precision = "int8" if (i in int8_heads or op in INT8_OPS) else "fp32"
        if kind == "view":
            src = next((n for n in act_in), None)
            if src is not None:
                for o in outs:
                    aliases[o] = aliases.get(src, src)
        out_elems = 0
        for o in outs:
            s = table.get(o)
            if s is not None:
                out_elems += math.prod(s)
        name = node.name or (node.output[0] if node.output else op)
        steps.append(
            Step(
                name=name,
                op_type=op if not group else "+".join([op, *(nodes[j].op_type for j in group)]),
                kind=kind,
                precision=precision,
                macs=int(macs or 0),
                macs_known=macs_known,
                weight_bytes=w_bytes,
                input_bytes=0 if kind == "view" else sum(s or 0 for s in in_sizes),
                output_bytes=0 if kind == "view" else sum(s or 0 for s in out_sizes),
                inputs=list(dict.fromkeys(act_in)),
                outputs=outs,
                fused=[label_of(j) for j in group],
                elements=out_elems,
                dims=_gemm_dims(node, kind, table) if macs else None,
                conv=_conv_shape(node, table) if op in CONV_OPS else None,
            )
        )
    steps = _fuse_dynamic_matmuls(steps, set(graph_outputs))
    tensor_bytes: dict[str, int] = {}
    for name in {*(n for st in steps for n in (*st.inputs, *st.outputs))}:
        nbytes = tbytes(name)
        if nbytes is not None:
            tensor_bytes[name] = nbytes
    graph_inputs = [vi.name for vi in g.input if vi.name not in init_names]
    return ExecutionPlan(
        steps=steps,
        weight_bytes=weight_total,
        graph_inputs=graph_inputs,
        graph_outputs=graph_outputs,
        tensor_bytes=tensor_bytes,
        aliases=aliases,
        assumed_shapes=assumed,
        unknown_shapes=sorted(set(unknown_shapes)),
        size_bytes=size,
        folded=folded,
    )


def _base(step: Step) -> str:
    return step.op_type.split("+")[0]


def _fuse_dynamic_matmuls(steps: list[Step], outputs: set[str]) -> list[Step]:
    """ONNX Runtime's ``DynamicQuantizeMatMul`` fusion on a dynamically quantized model:
    ``DynamicQuantizeLinear`` -> ``MatMulInteger`` -> ``Cast`` -> ``Mul`` by the product of the
    two scales (itself a ``Mul``) -> ``Add`` of a constant bias runs as one int8 kernel that
    quantizes its float input, multiplies and rescales; a ``DynamicQuantizeLinear`` whose
    every reader is fused goes (ONNX Runtime quantizes once per fused kernel)."""
    producer: dict[str, int] = {}
    readers: dict[str, list[int]] = {}
    for i, st in enumerate(steps):
        for o in st.outputs:
            producer[o] = i
        for n in st.inputs:
            readers.setdefault(n, []).append(i)

    def sole(tensor: str, op: str) -> int | None:
        r = readers.get(tensor, [])
        if len(r) == 1 and tensor not in outputs and _base(steps[r[0]]) == op:
            return r[0]
        return None

    gone: set[int] = set()
    fused_at: dict[int, Step] = {}
    for i, st in enumerate(steps):
        if _base(st) != "MatMulInteger" or not st.inputs or len(st.outputs) != 1:
            continue
        q = producer.get(st.inputs[0])
        if q is None or _base(steps[q]) != "DynamicQuantizeLinear":
            continue
        cast = sole(st.outputs[0], "Cast")
        mul = sole(steps[cast].outputs[0], "Mul") if cast is not None else None
        if cast is None or mul is None:
            continue
        chain = [i, cast, mul]
        scale = [producer.get(n) for n in steps[mul].inputs if producer.get(n) != cast]
        chain += [j for j in scale if j is not None and _base(steps[j]) == "Mul"]
        last = mul
        add = sole(steps[mul].outputs[0], "Add")
        if add is not None and len(steps[add].inputs) == 1:  # a constant bias
            chain.append(add)
            last = add
        quant = steps[q]
        parts = [steps[j] for j in sorted(chain)]
        fused_at[i] = replace(
            st,
            op_type="DynamicQuantizeMatMul",
            weight_bytes=sum(p.weight_bytes for p in parts),
            input_bytes=quant.input_bytes,
            output_bytes=steps[last].output_bytes,
            inputs=list(quant.inputs),
            outputs=list(steps[last].outputs),
            fused=[quant.name, *(p.name for p in parts if p is not st)],
            elements=steps[last].elements,
        )
        gone.update(j for j in chain if j != i)
    for i, st in enumerate(steps):  # a quantizer all of whose readers were fused
        if _base(st) == "DynamicQuantizeLinear" and not (set(st.outputs) & outputs):
            readers_of = {r for o in st.outputs for r in readers.get(o, [])}
            if readers_of and readers_of <= gone | set(fused_at):
                gone.add(i)
    return [fused_at.get(i, st) for i, st in enumerate(steps) if i not in gone]


def activation_peak(plan: ExecutionPlan) -> int:
    """Largest sum of live activation bytes over the steps in order (inputs included).

    A buffer is allocated by the step that writes it (graph inputs: before the first step) and
    freed after the last step that reads it, or kept to the end for a graph output. A view's
    output shares its source's buffer and extends its life.
    """

    def root(name: str) -> str:
        return plan.aliases.get(name, name)

    last_use: dict[str, int] = {}
    for idx, step in enumerate(plan.steps):
        for name in (*step.inputs, *step.outputs):
            last_use[root(name)] = idx
    end = len(plan.steps)
    for name in plan.graph_outputs:
        last_use[root(name)] = end
    live: dict[str, int] = {}
    for name in plan.graph_inputs:
        if name in plan.tensor_bytes:
            live[name] = plan.tensor_bytes[name]
    peak = sum(live.values())
    for idx, step in enumerate(plan.steps):
        for name in step.outputs:
            r = root(name)
            if r not in live and r in plan.tensor_bytes:
                live[r] = plan.tensor_bytes[r]
        peak = max(peak, sum(live.values()))
        for r in [r for r in live if last_use.get(r, -1) <= idx]:
            del live[r]
    return peak
