"""``graph_stats``: parameters, MACs, operators and size of an ONNX model, without running it."""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, shape_inference

from edgeloop._io import read_bytes, scratch_cwd
from edgeloop.analysis._macs import Shape, node_macs
from edgeloop.artifacts import TensorSpec
from edgeloop.errors import InputError, ModelFormatError

__all__ = ["GraphStats", "graph_stats", "load_model", "onnx_dtype_name"]


@dataclass(frozen=True)
class GraphStats:
    """What an ONNX graph holds and costs, for one run at batch 1 (or the shapes given).

    ``macs`` sums the operators whose shapes were known; ``macs_unknown`` names the nodes
    (``op_type:name``) whose MACs could not be counted, so a caller can tell a lower bound from
    an exact count (``macs_complete``).
    """

    params: int
    macs: int
    nodes: int
    op_counts: dict[str, int]
    macs_by_op: dict[str, int]
    size_bytes: int
    weight_bytes: int
    params_by_dtype: dict[str, int]
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    opsets: dict[str, int]
    macs_unknown: tuple[str, ...] = ()
    assumed_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)

    @property
    def macs_complete(self) -> bool:
        return not self.macs_unknown

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["inputs"] = [s.to_dict() for s in self.inputs]
        d["outputs"] = [s.to_dict() for s in self.outputs]
        d["assumed_shapes"] = {k: list(v) for k, v in self.assumed_shapes.items()}
        d["macs_unknown"] = list(self.macs_unknown)
        d["macs_complete"] = self.macs_complete
        return d


def onnx_dtype_name(elem_type: int) -> str:
    """ONNX element type -> numpy-style name (``float32``, ``int64``, ``bfloat16`` ...)."""
    try:
        return str(np.dtype(helper.tensor_dtype_to_np_dtype(elem_type)))
    except (KeyError, TypeError, ValueError):
        name = TensorProto.DataType.Name(elem_type) if elem_type else "UNDEFINED"
        return name.lower()


def load_model(model: str | Path | bytes | onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    """The model proto and its serialized size in bytes (external data files included)."""
    if isinstance(model, onnx.ModelProto):
        return model, model.ByteSize()
    if isinstance(model, bytes | bytearray):
        return _parse(bytes(model), "<bytes>"), len(model)
    path = Path(model)
    data = read_bytes(path, "model")
    proto = _parse(data, str(path))
    size = len(data)
    external = {
        entry.value
        for t in _all_initializers(proto.graph)
        if t.data_location == TensorProto.EXTERNAL
        for entry in t.external_data
        if entry.key == "location"
    }
    if external:
        try:
            onnx.load_external_data_for_model(proto, str(path.parent))
        except (OSError, ValueError) as e:
            raise ModelFormatError(
                f"model {str(path)!r}: cannot load its external data: {e}"
            ) from e
        size += sum((path.parent / loc).stat().st_size for loc in external)
    return proto, size


def _parse(data: bytes, name: str) -> onnx.ModelProto:
    try:
        proto = onnx.load_model_from_string(data)
    except Exception as e:  # protobuf's DecodeError and friends
        raise ModelFormatError(f"{name!r} is not an ONNX model: {e}") from e
    if not proto.HasField("graph") or not proto.opset_import:
        raise ModelFormatError(f"{name!r} is not an ONNX model: no graph or opset")
    return proto


def _all_graphs(graph: onnx.GraphProto) -> Iterator[onnx.GraphProto]:
    yield graph
    for node in graph.node:
        for a in node.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                yield from _all_graphs(a.g)
            elif a.type == onnx.AttributeProto.GRAPHS:
                for g in a.graphs:
                    yield from _all_graphs(g)


def _all_initializers(graph: onnx.GraphProto) -> Iterator[TensorProto]:
    for g in _all_graphs(graph):
        yield from g.initializer


def _all_weights(graph: onnx.GraphProto) -> Iterator[TensorProto]:
    """Initializers and the tensors of ``Constant`` nodes: other exporters (TensorFlow's,
    PyTorch's without folding) hold the weights in ``Constant`` nodes, and they are parameters
    all the same."""
    for g in _all_graphs(graph):
        yield from g.initializer
        for node in g.node:
            if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
                for a in node.attribute:
                    if a.name == "value" and a.type == onnx.AttributeProto.TENSOR:
                        yield a.t


def _tensor_bytes(t: TensorProto) -> int:
    n = int(np.prod(t.dims, dtype=np.int64)) if t.dims else 1
    try:
        itemsize = np.dtype(helper.tensor_dtype_to_np_dtype(t.data_type)).itemsize
    except (KeyError, TypeError, ValueError):
        itemsize = 1
    if t.data_type in (TensorProto.INT4, TensorProto.UINT4):
        return (n + 1) // 2
    return n * itemsize


def _spec(vi: onnx.ValueInfoProto) -> TensorSpec:
    tt = vi.type.tensor_type
    dims: list[int | str | None] = []
    for d in tt.shape.dim:
        if d.HasField("dim_value"):
            dims.append(int(d.dim_value))
        elif d.HasField("dim_param"):
            dims.append(d.dim_param)
        else:
            dims.append(None)
    return TensorSpec(vi.name, onnx_dtype_name(tt.elem_type), tuple(dims))


def _known(d: onnx.TensorShapeProto.Dimension) -> bool:
    """A concrete dimension: a positive ``dim_value`` (exporters write -1 or 0 for dynamic
    dims, which would make MAC counts negative or 0)."""
    return d.HasField("dim_value") and d.dim_value > 0


def _fix_input_shapes(
    model: onnx.ModelProto, overrides: Mapping[str, Sequence[int]]
) -> dict[str, tuple[int, ...]]:
    """Pin dynamic input dims in place: the given shapes, else a dynamic leading (batch) dim = 1."""
    init_names = {t.name for t in model.graph.initializer}
    names = [vi.name for vi in model.graph.input if vi.name not in init_names]
    unknown = sorted(set(overrides) - set(names))
    if unknown:
        raise InputError(
            f"input_shapes names unknown input {', '.join(map(repr, unknown))}; the model's "
            f"inputs are: {', '.join(names)}"
        )
    assumed: dict[str, tuple[int, ...]] = {}
    for vi in model.graph.input:
        if vi.name in init_names or not vi.type.HasField("tensor_type"):
            continue
        dims = vi.type.tensor_type.shape.dim
        if vi.name in overrides:
            shape = tuple(int(v) for v in overrides[vi.name])
            del dims[:]
            for v in shape:
                dims.add().dim_value = v
            assumed[vi.name] = shape
            continue
        if dims and not _known(dims[0]):  # symbolic, missing, or -1/0 as some exporters write
            dims[0].Clear()
            dims[0].dim_value = 1
        if all(_known(d) for d in dims):
            assumed[vi.name] = tuple(d.dim_value for d in dims)
    return assumed


def _infer(model: onnx.ModelProto) -> onnx.ModelProto:
    try:
        return shape_inference.infer_shapes(
            model, check_type=False, strict_mode=False, data_prop=True
        )
    except Exception:  # a graph ONNX's inference rejects: count what the file itself declares
        return model


def _symbolic_infer(model: onnx.ModelProto) -> onnx.ModelProto | None:
    """ONNX Runtime's symbolic shape inference, which knows its contrib ops (MatMulNBits ...)."""
    try:
        from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

        with scratch_cwd():  # it saves a temp model into the cwd when it gives up
            out = SymbolicShapeInference.infer_shapes(
                model, auto_merge=True, guess_output_rank=True
            )
    except Exception:
        return None
    return out if isinstance(out, onnx.ModelProto) else None


def _shape_table(model: onnx.ModelProto) -> dict[str, Shape | None]:
    table: dict[str, Shape | None] = {}
    for g in _all_graphs(model.graph):
        for vi in [*g.input, *g.value_info, *g.output]:
            if not vi.type.HasField("tensor_type") or not vi.type.tensor_type.HasField("shape"):
                continue
            dims = vi.type.tensor_type.shape.dim
            if all(_known(d) for d in dims):
                table[vi.name] = tuple(int(d.dim_value) for d in dims)
            else:
                table.setdefault(vi.name, None)
        for t in g.initializer:
            table[t.name] = tuple(int(d) for d in t.dims)
        for node in g.node:
            if node.op_type == "Constant" and node.output:
                for a in node.attribute:
                    if a.name == "value" and a.type == onnx.AttributeProto.TENSOR:
                        table[node.output[0]] = tuple(int(d) for d in a.t.dims)
    return table


def _count_macs(
    model: onnx.ModelProto, table: Mapping[str, Shape | None]
) -> tuple[int, dict[str, int], list[str]]:
    total = 0
    by_op: Counter[str] = Counter()
    unknown: list[str] = []
    for g in _all_graphs(model.graph):
        for node in g.node:
            counts, macs = node_macs(node, lambda n: table.get(n))
            if not counts:
                continue
            if macs is None:
                unknown.append(f"{node.op_type}:{node.name or node.output[0]}")
            else:
                total += macs
                by_op[node.op_type] += macs
    return total, dict(by_op), unknown


def graph_stats(
    model: str | Path | bytes | onnx.ModelProto,
    *,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
) -> GraphStats:
    """Count parameters, MACs and operators of an ONNX model after shape inference.

    Dynamic leading (batch) dimensions are taken as 1; ``input_shapes`` pins any input fully
    (e.g. ``{"tokens": (1, 128)}``) when other dimensions are dynamic. Nodes in subgraphs (If,
    Loop, Scan bodies) are counted once. Raises :class:`ModelFormatError` for a file that is not
    ONNX and :class:`FileError` for a missing or unreadable one.
    """
    proto, size = load_model(model)
    if proto.functions:
        from onnx import inliner

        proto = inliner.inline_local_functions(proto)
    work = copy.deepcopy(proto)
    assumed = _fix_input_shapes(work, input_shapes or {})
    inferred = _infer(work)
    table = _shape_table(inferred)
    macs, by_op, unknown = _count_macs(inferred, table)
    if unknown:
        symbolic = _symbolic_infer(work)
        if symbolic is not None:
            retry = _count_macs(symbolic, {**table, **_shape_table(symbolic)})
            if len(retry[2]) < len(unknown):
                macs, by_op, unknown = retry

    inits = list(_all_weights(proto.graph))
    init_names = {t.name for t in proto.graph.initializer}
    params_by_dtype: Counter[str] = Counter()
    for t in inits:
        params_by_dtype[onnx_dtype_name(t.data_type)] += int(np.prod(t.dims, dtype=np.int64))
    for st in proto.graph.sparse_initializer:
        params_by_dtype[onnx_dtype_name(st.values.data_type)] += int(
            np.prod(st.values.dims, dtype=np.int64)
        )
    ops: Counter[str] = Counter()
    for g in _all_graphs(proto.graph):
        for node in g.node:
            ops[
                node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"
            ] += 1
    return GraphStats(
        params=sum(params_by_dtype.values()),
        macs=macs,
        nodes=sum(ops.values()),
        op_counts=dict(sorted(ops.items(), key=lambda kv: (-kv[1], kv[0]))),
        macs_by_op=dict(sorted(by_op.items(), key=lambda kv: -kv[1])),
        size_bytes=size,
        weight_bytes=sum(_tensor_bytes(t) for t in inits),
        params_by_dtype=dict(params_by_dtype),
        inputs=tuple(_spec(vi) for vi in proto.graph.input if vi.name not in init_names),
        outputs=tuple(_spec(vi) for vi in proto.graph.output),
        opsets={(o.domain or "ai.onnx"): int(o.version) for o in proto.opset_import},
        macs_unknown=tuple(unknown),
        assumed_shapes=assumed,
    )
