"""Write small ONNX models without the ``onnx`` package, for the device-only test run.

A device install has onnxruntime but not onnx (``pip install edgeloop``), and the agent, bundle
and update tests need models to pack and run. ONNX files are protocol buffers; these few
messages (ModelProto, GraphProto, NodeProto, TensorProto, ValueInfoProto, AttributeProto with an
int) are written here field by field, with the field numbers of onnx/onnx.proto. Written by hand
because the one library that writes them is the ``onnx`` package a device does not have;
tests/test_onnx_writer.py checks the bytes against onnx's own reader and checker.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

FLOAT, INT64 = 1, 7  # TensorProto.DataType
_DTYPES = {np.dtype(np.float32): FLOAT, np.dtype(np.int64): INT64}

Dim = int | str  # a fixed size, or a named dynamic dimension
Node = (
    tuple[str, Sequence[str], Sequence[str]]
    | tuple[str, Sequence[str], Sequence[str], dict[str, int]]
)


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # negative int64 values are written as 10-byte two's complement
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _int(field: int, value: int) -> bytes:
    return _varint(field << 3) + _varint(value)


def _bytes(field: int, value: bytes | str) -> bytes:
    data = value.encode() if isinstance(value, str) else value
    return _varint(field << 3 | 2) + _varint(len(data)) + data


def _value_info(name: str, elem_type: int, dims: Sequence[Dim]) -> bytes:
    shape = b"".join(_bytes(1, _int(1, d) if isinstance(d, int) else _bytes(2, d)) for d in dims)
    tensor_type = _int(1, elem_type) + _bytes(2, shape)
    return _bytes(1, name) + _bytes(2, _bytes(1, tensor_type))


def _tensor(name: str, array: np.ndarray) -> bytes:
    a = np.ascontiguousarray(array)
    dims = b"".join(_int(1, d) for d in a.shape)
    raw = a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()
    return dims + _int(2, _DTYPES[a.dtype]) + _bytes(8, name) + _bytes(9, raw)


def _node(node: Node) -> bytes:
    op, inputs, outputs = node[0], node[1], node[2]
    attrs: dict[str, int] = node[3] if len(node) == 4 else {}  # type: ignore[misc]
    out = b"".join(_bytes(1, i) for i in inputs) + b"".join(_bytes(2, o) for o in outputs)
    out += _bytes(4, op)
    for name, value in attrs.items():  # AttributeProto: name=1, i=3, type=20 (INT = 2)
        out += _bytes(5, _bytes(1, name) + _int(3, value) + _int(20, 2))
    return out


def model_bytes(
    nodes: Sequence[Node],
    inputs: Sequence[tuple[str, int, Sequence[Dim]]],
    outputs: Sequence[tuple[str, int, Sequence[Dim]]],
    initializers: Mapping[str, np.ndarray] = {},  # noqa: B006 - read only
    *,
    opset: int = 17,
    ir_version: int = 8,
) -> bytes:
    """A serialized ModelProto: ``nodes`` are ``(op_type, inputs, outputs[, int attributes])``,
    ``inputs``/``outputs`` are ``(name, FLOAT or INT64, dims)``."""
    graph = b"".join(_bytes(1, _node(n)) for n in nodes) + _bytes(2, "g")
    graph += b"".join(_bytes(5, _tensor(k, v)) for k, v in initializers.items())
    graph += b"".join(_bytes(11, _value_info(*i)) for i in inputs)
    graph += b"".join(_bytes(12, _value_info(*o)) for o in outputs)
    opset_id = _bytes(1, "") + _int(2, opset)
    return _int(1, ir_version) + _bytes(7, graph) + _bytes(8, opset_id)
